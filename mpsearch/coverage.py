"""What a plan leaves unquantized: the parameters outside every site, which stay 16-bit.

A layer no rule covers (an LSTM, a custom op) is silently 16-bit; a "3.7 bits" plan can then be
98% of the 16-bit size. Every plan states the share and names the largest such tensors, so that
a memory budget's arithmetic (which counts them) and a bits budget's (which is per site weight)
can both be read off the plan.
"""

from __future__ import annotations

from torch import nn

from .model import Site, sites

TOP = 5  # how many of the largest unquantized tensors a plan names


def _owner(model: nn.Module, name: str) -> str:
    mod, _, _ = name.rpartition(".")
    try:
        return type(model.get_submodule(mod)).__name__ if mod else type(model).__name__
    except AttributeError:
        return ""


def unquantized(model: nn.Module, site_list: list[Site], top: int = TOP) -> tuple[dict[str, float], list[dict]]:
    """({unquantized_params, unquantized_share, avg_bits_all_weights}, the `top` largest tensors outside
    the sites). Tied parameters count once; `avg_bits_all_weights` is filled in by `totals`."""
    site_params = {s.param for s in site_list}
    seen, rows, total = set(), [], 0
    for name, p in model.named_parameters():  # named_parameters() already skips tied duplicates
        if id(p) in seen:
            continue
        seen.add(id(p))
        total += p.numel()
        if name not in site_params:
            rows.append({"name": name, "params": int(p.numel()), "module": _owner(model, name)})
    rows.sort(key=lambda r: -r["params"])
    n = sum(r["params"] for r in rows)
    return {"unquantized_params": float(n), "unquantized_share": n / total if total else 0.0,
            "all_params": float(total)}, rows[:top]


def add_to(plan, model: nn.Module, site_list: list[Site], site_bits: float) -> None:
    """Record the coverage on `plan`: totals and the largest unquantized tensors."""
    t, largest = unquantized(model, site_list)
    all_params = t.pop("all_params")
    t["avg_bits_all_weights"] = (site_bits + 16 * t["unquantized_params"]) / all_params if all_params else 0.0
    plan.totals.update(t)
    plan.unquantized = largest
    chosen = {s.param for s in site_list}
    skipped = [s.name for s in sites(model) if s.param not in chosen]
    if skipped:  # layers the example input never ran: a plan may leave them out (apply checks the rest)
        plan.provenance["unexecuted_sites"] = skipped


def line(plan) -> str | None:
    """One line for the CLI, or None when every parameter is in a site (or the plan predates this)."""
    share = plan.totals.get("unquantized_share")
    if not share:
        return None
    names = ", ".join(f"{r['name']} ({r['params']:,}{', ' + r['module'] if r.get('module') else ''})"
                      for r in plan.unquantized[:3])
    return (f"unquantized: {share:.1%} of the weights stay 16-bit, outside every site (largest: {names}); "
            f"avg over all weights {plan.totals['avg_bits_all_weights']:.3f} bits")
