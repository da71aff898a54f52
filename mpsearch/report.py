"""Plain-text tables a person reads after `plan`, `eval` and friends."""

from __future__ import annotations

import math

import pandas as pd

from . import coverage
from .budget import format_metric
from .plan import Plan


def _num(v, digits: int = 4) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "-"
    return f"{v:.{digits}g}"


def site_table(plan: Plan) -> str:
    rows = []
    for name, r in plan.sites.items():
        row = {"site": name, "kind": r.get("kind", ""), "params": r["params"], "format": r["format"],
               "bits/w": f"{r['bits_per_weight']:.3f}", "bytes": int(r["bytes"]), "omega": _num(r.get("omega"))}
        for k in ("latency", "energy"):
            if k in r:
                row[k] = format_metric(k, r[k])
        rows.append(row)
    return pd.DataFrame(rows).to_string(index=False)


def totals_line(plan: Plan) -> str:
    t = plan.totals
    parts = [f"size {format_metric('memory', t['bytes'])} "
             f"({t['bytes'] / t['bytes_16bit']:.1%} of 16-bit {format_metric('memory', t['bytes_16bit'])})",
             f"avg {t['avg_bits']:.3f} bits/weight over the sites"]
    if "omega" in t:
        parts.append(f"predicted Ω {_num(t['omega'])}")
    for k in ("latency", "energy", "bops"):
        if k in t:
            parts.append(f"{k} {format_metric(k, t[k])}")
    out = "totals: " + ", ".join(parts) + f"; budgets: {', '.join(plan.budgets) or '-'}"
    cov = coverage.line(plan)
    rnd = rounding_line(plan)
    return out + ("\n" + cov if cov else "") + ("\n" + rnd if rnd else "")


def rounding_line(plan: Plan) -> str:
    """How the plan's weights are rounded, where that is news: a GPTQ/AWQ plan (apply and export need
    `data=`), or `auto` staying at round-to-nearest for a model too large for GPTQ's statistics."""
    name, why = plan.provenance.get("rounding", "rtn"), plan.provenance.get("rounding_from", "")
    if name == "rtn" and "forces it" not in why:
        return ""
    head = f"auto: {name} ("
    if why.startswith(head) and why.endswith(")"):
        return f"rounding: {name} (auto: {why[len(head):-1]})"
    return f"rounding: {name}"


def comparison_rows(plan: Plan) -> list[tuple[str, dict]]:
    """FP, the plan, every uniform plan that fits, and the cheapest uniform that does not (equal or larger cost)."""
    m = plan.measured
    if not m:
        return []
    rows = [("fp (16-bit)", {"bytes": plan.totals["bytes_16bit"], "avg_bits": 16.0}),
            ("plan", {"bytes": plan.totals["bytes"], "avg_bits": plan.totals["avg_bits"]})]
    uni = m.get("uniform", {})
    fitting = [(k, v) for k, v in uni.items() if v.get("fits_budget")]
    over = sorted((v["bytes"], k) for k, v in uni.items() if not v.get("fits_budget"))
    rows += [(f"uniform {k}", v) for k, v in fitting]
    if over:
        rows.append((f"uniform {over[0][1]} (over budget)", uni[over[0][1]]))
    return rows


def comparison_table(plan: Plan, test: dict[str, dict] | None = None) -> str:
    """Measured metrics per row; `test` maps the same row labels to held-out measurements."""
    m = plan.measured
    cal = {"fp (16-bit)": m["fp"], "plan": m["plan"]} | {f"uniform {k}": v for k, v in m.get("uniform", {}).items()}
    out = []
    for label, cost in comparison_rows(plan):
        key = label.replace(" (over budget)", "")
        row = {"": label, "size": format_metric("memory", cost["bytes"]), "bits/w": f"{cost['avg_bits']:.3f}"}
        for metric, v in cal.get(key, {}).items():
            if metric not in ("fits_budget", "bytes", "avg_bits"):
                row[f"cal {metric}"] = _num(v)
        for metric, v in (test or {}).get(key, {}).items():
            row[f"test {metric}"] = _num(v)
        out.append(row)
    return pd.DataFrame(out).fillna("-").to_string(index=False)  # over-budget uniform plans are not measured
