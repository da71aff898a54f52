"""The quantization plan: per-site formats, predicted totals, provenance, and the model it binds to.

Saved as versioned JSON, written atomically (temp file + rename: a crash never leaves half a plan).
"""

from __future__ import annotations

import datetime as _dt
import difflib
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import pandas as pd
from torch import nn

from . import hardware_models
from ._version import __version__
from .activations import ActParams, calibrate, site_record
from .data import as_data
from .errors import MpsearchError, PlanError
from .formats import get_choice
from .io import atomic_write_bytes, atomic_write_text  # noqa: F401  (re-exported: older callers import them here)
from .model import Site, fingerprint, sites

SCHEMA_VERSION = 1


@dataclass
class Plan:
    """`assignments` maps site name -> choice name (`int4`, `int8:int8`, `bf16`, ...).

    `sites` holds each site's record (format, params, bytes, bits, omega, ...); `totals` the predicted
    model totals (bytes incl. fixed 16-bit parameters, avg_bits over the site weights, the share of
    weights left unquantized and the average over all weights, omega, and any hardware metrics);
    `measured` what was measured when the plan was made (objective values for FP, plan, baselines).
    """

    assignments: dict[str, str]
    fingerprint: str
    sites: dict[str, dict] = field(default_factory=dict)
    totals: dict[str, float] = field(default_factory=dict)
    budgets: list[str] = field(default_factory=list)
    provenance: dict = field(default_factory=dict)
    measured: dict = field(default_factory=dict)
    schema_version: int = SCHEMA_VERSION
    unquantized: list[dict] = field(default_factory=list)  # the largest parameters outside every site (16-bit)

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, sort_keys=False, allow_nan=True)

    def save(self, path: str | Path) -> Path:
        atomic_write_text(path, self.to_json() + "\n")
        return Path(path)

    @classmethod
    def load(cls, path: str | Path) -> Plan:
        p = Path(path)
        if not p.is_file():
            raise PlanError(f"plan file {str(p)!r} does not exist; make one with `mpsearch plan ... -o {p.name}`")
        try:
            obj = json.loads(p.read_text(encoding="utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            raise PlanError(f"plan file {str(p)!r} is not valid JSON ({e.__class__.__name__}); "
                            "regenerate it with `mpsearch plan`") from e
        return cls.from_dict(obj, source=str(p))

    @classmethod
    def from_dict(cls, obj: dict, source: str = "plan") -> Plan:
        if not isinstance(obj, dict) or "assignments" not in obj or "fingerprint" not in obj:
            raise PlanError(f"{source} is not an mpsearch plan (no 'assignments'/'fingerprint')")
        from .validate import check_plan_dict

        check_plan_dict(obj, source, SCHEMA_VERSION, list(cls.__dataclass_fields__))
        known = {k: obj[k] for k in cls.__dataclass_fields__ if k in obj}
        plan = cls(**known)
        try:
            for f in plan.assignments.values():
                get_choice(f)
        except MpsearchError as e:
            raise PlanError(f"{source}: {e}") from e
        return plan

    @classmethod
    def from_assignments(cls, model: nn.Module, assignments: dict[str, str], *, example=None,
                         default: str = "bf16", hardware=None, data=None) -> Plan:
        """Build a plan by hand. Sites not named keep `default`; predicted costs are filled in.
        `data` (calibration inputs) is needed when a choice quantizes activations (`int8:int8`)."""
        data = None if data is None else as_data(data)
        found = sites(model, example)
        names = {s.name for s in found}
        unknown = [k for k in assignments if k not in names]
        if unknown:
            close = difflib.get_close_matches(unknown[0], sorted(names), n=3)
            hint = f" (did you mean {', '.join(close)}?)" if close else ""
            raise PlanError(f"no site named {unknown[0]!r} in this model{hint}; `mpsearch sites` lists them")
        full = {s.name: get_choice(assignments.get(s.name, default)).name for s in found}
        acts = {s: [get_choice(c).act] for s, c in full.items() if get_choice(c).act is not None}
        if acts and data is None:
            raise PlanError(f"site {next(iter(acts))!r} quantizes activations ({full[next(iter(acts))]}); "
                            "pass data= (calibration inputs) so the plan can store its activation scale")
        plan = cls(full, fingerprint(model), provenance=provenance("manual", "manual", None))
        describe(plan, model, found, hardware=hardware, acts=calibrate(model, data, acts) if acts else None)
        return plan

    def summary_rows(self) -> list[dict]:
        return [{"site": k, **v} for k, v in self.sites.items()]


def provenance(estimator: str, search: str, seed: int | None, **extra) -> dict:
    return {
        "estimator": estimator, "search": search, "seed": seed, "mpsearch_version": __version__,
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"), **extra,
    }


def describe(plan: Plan, model: nn.Module, site_list: list[Site], hardware=None,
             omega: pd.DataFrame | None = None, acts: ActParams | None = None) -> Plan:
    """Fill `plan.sites` and `plan.totals` with predicted costs (and Ω where known)."""
    hw = hardware_models.get(hardware)
    ref = hardware_models.reference(model, site_list, hw)
    om = {} if omega is None else {(r.site, r.format): (r.omega, r.omega_se) for r in omega.itertuples()}
    records, sums = {}, {}
    for s in site_list:
        c = get_choice(plan.assignments[s.name])
        cost = hardware_models.storage_costs(s, c) | (hw.site_cost(s, c) if hw else {})
        o, se = om.get((s.name, c.name), (None, None))
        records[s.name] = {"format": c.name, "kind": s.kind, "params": s.numel, "macs": s.macs,
                           "bits_per_weight": cost["bits"] / s.numel, **cost, "omega": o, "omega_se": se,
                           **site_record(c, s.name, acts or {})}
        for k, v in cost.items():
            sums[k] = sums.get(k, 0.0) + v
    totals = {k: v + ref.fixed.get(k, 0.0) for k, v in sums.items()}
    totals["avg_bits"] = sums["bits"] / ref.weights
    totals["bytes_16bit"] = ref.full["bytes"]
    if om:
        totals["omega"] = float(sum(r["omega"] for r in records.values()))
    plan.sites, plan.totals = records, totals
    from .coverage import add_to  # validate: what stays 16-bit outside the sites

    add_to(plan, model, site_list, sums["bits"])
    return plan
