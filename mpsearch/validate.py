"""Cheap checks that run before anything expensive: data, plans against the model, output paths.

A bad input should fail in a second with one line naming the problem and the fix, not after minutes
of estimation with an error about a by-product (a NaN pixel surfaced as "the search table has NaN").
"""

from __future__ import annotations

import difflib
import os
from pathlib import Path

import torch

from .errors import DataError, ModelMismatch, PlanError, UsageError

# Ω's error bar is the spread of per-sample contributions (√n · std): one sample gives none, two a
# meaningless one; below this the plan would rest on noise.
MIN_SAMPLES = 8


def _tensors(x, what: str):
    if isinstance(x, torch.Tensor):
        yield what, x
    elif isinstance(x, dict):
        for k, v in x.items():
            yield from _tensors(v, f"{what}[{k!r}]")
    elif isinstance(x, (tuple, list)):
        for i, v in enumerate(x):
            yield from _tensors(v, f"{what}[{i}]")


def check_count(data, min_samples: int = MIN_SAMPLES) -> None:
    """Enough samples for an estimate with an error bar."""
    n = data.num_samples
    x = data.batches[0].x
    ids = x.get("input_ids") if isinstance(x, dict) else x
    if isinstance(ids, torch.Tensor) and ids.ndim == 2 and not ids.is_floating_point():
        n *= ids.shape[1]  # token sequences: every position is a scored sample (next-token loss, KL)
    if n < min_samples:
        raise DataError(f"the calibration data has {n} sample{'s' if n != 1 else ''}; the sensitivity estimate "
                        f"needs at least {min_samples} (its error bars come from the spread over samples)")


def check_finite(data) -> None:
    """Every input and label finite: one NaN would otherwise surface minutes later as a NaN Ω."""
    for b in data:
        for what, t in list(_tensors(b.x, "x")) + list(_tensors(b.y, "y")):
            if t.is_floating_point() and not bool(torch.isfinite(t).all()):
                bad = int((~torch.isfinite(t)).sum())
                kind = "NaN" if bool(torch.isnan(t).any()) else "Inf"
                raise DataError(f"the calibration {what} holds {bad} non-finite value{'s' if bad > 1 else ''} "
                                f"({kind}); replace or drop those samples")


def check_labels(data, out: torch.Tensor) -> None:
    """Class labels must be integers in 0..C-1 of the model's C outputs."""
    if not data.labelled or out.dim() < 2:
        return
    for b in data:
        if b.y.is_floating_point():
            if not bool((b.y == b.y.round()).all()):
                raise DataError(f"labels are fractional ({b.y.dtype}); pass class indices 0..C-1 as integers")
            b.y = b.y.long()  # integral floats (numpy's default for a label column) are class indices
    lo = min(int(b.y.min()) for b in data)
    hi = max(int(b.y.max()) for b in data)
    c = out.shape[-1]
    if lo < 0:
        raise DataError(f"labels include {lo}, but class labels must be indices 0..{c - 1} (the model has {c} outputs)")
    if hi >= c:
        raise DataError(f"labels run up to {hi} but the model has {c} outputs; labels must be class indices 0..{c - 1}")


def dtype_hint(x) -> str | None:
    """When a model call failed on integer inputs, the fix is a dtype, not a shape."""
    ints = [(w, t.dtype) for w, t in _tensors(x, "x") if not t.is_floating_point()]
    if ints and len(ints) == len(list(_tensors(x, "x"))):
        return (f"the inputs are integers ({ints[0][1]}) but the model computes in floating point; pass float "
                "inputs (e.g. x.float()), or token ids only to a model that starts with an embedding")
    return None


def check_plan_sites(plan, site_names: list[str], source: str = "the plan") -> None:
    """The plan names exactly this model's sites: none missing (it would stay 16-bit unnoticed), none
    extra (a BatchNorm weight or a typo would be quantized, or fail deep inside)."""
    names = set(site_names)
    extra = [s for s in plan.assignments if s not in names]
    if extra:
        close = difflib.get_close_matches(extra[0], sorted(names), n=3)
        hint = f" (did you mean {', '.join(close)}?)" if close else ""
        raise ModelMismatch(f"{source} names {extra[0]!r}, which is not a quantizable site of this model{hint}; "
                            "`mpsearch sites` lists them")
    missing = [s for s in site_names if s not in plan.assignments]
    if missing:
        more = f" and {len(missing) - 1} more" if len(missing) > 1 else ""
        raise ModelMismatch(f"{source} gives no format for site {missing[0]!r}{more}; name every site "
                            "(bf16 keeps one at 16 bits), or make the plan with `mpsearch plan`")


def check_plan_dict(obj: dict, source: str, current: int, fields) -> None:
    """Schema checks on a plan's raw JSON before any field is trusted."""
    if "schema_version" not in obj:
        raise PlanError(f"{source} has no 'schema_version'; plans from `mpsearch plan` carry one "
                        f"(this mpsearch writes {current})")
    v = obj["schema_version"]
    if isinstance(v, bool) or not isinstance(v, int):
        raise PlanError(f"{source} has schema_version {v!r} ({type(v).__name__}); it must be an integer "
                        f"1..{current}, e.g. \"schema_version\": {current}")
    if v > current:
        raise PlanError(f"{source} has schema version {v}, newer than this mpsearch reads ({current}); "
                        "upgrade mpsearch")
    if v < 1:
        raise PlanError(f"{source} has schema version {v}; versions start at 1 (this mpsearch reads 1..{current})")
    unknown = sorted(set(obj) - set(fields))
    if unknown:
        close = difflib.get_close_matches(unknown[0], sorted(fields), n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise PlanError(f"{source} has an unknown key {unknown[0]!r}{hint}; a plan holds {', '.join(fields)}")
    a = obj["assignments"]
    if not isinstance(a, dict) or not all(isinstance(k, str) and isinstance(f, str) for k, f in a.items()):
        raise PlanError(f"{source}: 'assignments' must map site name -> format name, e.g. "
                        "{\"fc1\": \"int4\"}; got " + type(a).__name__)
    for key, kind in (("sites", dict), ("totals", dict), ("budgets", list), ("provenance", dict),
                      ("measured", dict), ("fingerprint", str)):
        if key in obj and not isinstance(obj[key], kind):
            raise PlanError(f"{source}: {key!r} must be a JSON {'object' if kind is dict else kind.__name__}, "
                            f"not {type(obj[key]).__name__}; regenerate the plan with `mpsearch plan`")


def check_output(path: str | os.PathLike | None, flag: str = "-o") -> None:
    """The output can be written: not a directory, and its folder exists (or can be made) and is writable.
    Checked before the work, so a typo does not cost the whole run."""
    if path is None:
        return
    p = Path(path)
    if p.is_dir():
        raise UsageError(f"{flag} {str(p)!r} is a directory; name a file in it, e.g. {str(p / 'out')!r}")
    parent = p.parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir():
        raise UsageError(f"{flag} {str(p)!r}: {str(parent)!r} is not a directory; pick another path")
    if not os.access(parent, os.W_OK | os.X_OK) or (p.exists() and not os.access(p, os.W_OK)):
        raise UsageError(f"{flag} {str(p)!r} is not writable here; pick a path in a folder you can write to")


def check_cli_outputs(command: str, args) -> None:
    """Every file a verb will write, checked before it starts (`pareto -o X` writes X.csv and X.png)."""
    out = getattr(args, "output", None)
    if out is None:
        return
    if command == "pareto":
        base = Path(out)
        base = base.with_suffix("") if base.suffix in (".csv", ".png") else base
        for suffix in (".csv", ".png"):
            check_output(base.with_suffix(suffix))
    else:
        check_output(out)
