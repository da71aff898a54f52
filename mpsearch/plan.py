"""The quantization plan: per-site formats, predicted totals, provenance, and the model it binds to.

Saved as versioned JSON, written atomically (temp file + rename: a crash never leaves half a plan).
"""

from __future__ import annotations

import datetime as _dt
import difflib
import json
import os
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path

from torch import nn

from .errors import MpsearchError, PlanError
from .formats import get_choice

SCHEMA_VERSION = 1


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write_text(path: str | Path, text: str) -> None:
    """Write via a temp file in the same directory and rename over `path`."""
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write via a temp file in the same directory and rename over `path` (a crash leaves the old file)."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=p.parent, prefix=f".{p.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes it 0600; give it the mode open() would
        os.replace(tmp, p)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


@dataclass
class Plan:
    """`assignments` maps site name -> choice name (`int4`, `int8:int8`, `bf16`, ...).

    `sites` holds each site's record (format, params, bytes, bits, omega, ...); `totals` the predicted
    model totals (bytes incl. fixed 16-bit parameters, avg_bits, omega, and any hardware metrics);
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
        version = obj.get("schema_version", 0)
        if not isinstance(version, int) or version > SCHEMA_VERSION:
            raise PlanError(f"{source} has schema version {version}, newer than this mpsearch reads "
                            f"({SCHEMA_VERSION}); upgrade mpsearch")
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
        from .activations import calibrate
        from .api import describe
        from .data import as_data
        from .model import fingerprint, sites

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
    from . import __version__

    return {
        "estimator": estimator, "search": search, "seed": seed, "mpsearch_version": __version__,
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"), **extra,
    }
