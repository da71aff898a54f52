"""A study's trials as a pandas DataFrame, and CSV / Parquet export."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pandas as pd

from ..errors import StudyError, UsageError
from ..io import atomic_write_bytes, atomic_write_text
from .spec import GRID_DIMS, StudySpec, load_spec
from .storage import open_study

_RETRY_KEY = "retry_history"  # system attribute of RetryHeartbeatStaleTrialCallback's copies


def trials_frame(spec: StudySpec, storage: str | None = None, *, include_failed: bool = False,
                 current_only: bool = True) -> pd.DataFrame:
    """One row per trial: grid columns, every metric (predicted totals, measured objectives and their FP
    values as `fp_<name>`), chosen formats as JSON, and who ran it. Complete trials only unless
    `include_failed`; trials of grid points no longer in the file are dropped unless not `current_only`."""
    st = open_study(spec, storage, create=False)
    try:
        trials = st.trials()
    finally:
        st.close()
    grid = {p.digest for p in spec.grid()}
    rows = []
    for t in trials:
        a = t.user_attrs
        if "digest" not in a or (current_only and a["digest"] not in grid):
            continue
        if t.state.name != "COMPLETE" and not (include_failed and t.state.name == "FAIL"):
            continue
        row = {"trial": t.number, "state": t.state.name, **{d: a[d] for d in GRID_DIMS}}
        row |= a.get("metrics", {})
        row |= {f"fp_{k}": v for k, v in a.get("fp", {}).items()}
        row |= {"eval_split": a.get("eval_split"), "guarded": a.get("guarded"), "seconds": a.get("seconds"),
                "worker": a.get("worker"), "retry_of": (t.system_attrs.get(_RETRY_KEY) or [None])[0],
                "error": a.get("error"),
                "assignments": json.dumps(a["assignments"]) if "assignments" in a else None,
                "key": a["key"], "digest": a["digest"]}
        rows.append(row)
    df = pd.DataFrame(rows)
    if df.empty:
        return pd.DataFrame(columns=["trial", "state", *GRID_DIMS, *(m.name for m in spec.objectives)])
    return df.sort_values("trial", kind="stable").reset_index(drop=True)


def load_study(study: str | Path | StudySpec, storage: str | None = None, **kwargs) -> pd.DataFrame:
    """`mpsearch.load_study("studies/digits.toml")` -> DataFrame of its complete trials.

    `storage` defaults to the file's `storage` key, else the SQLite file beside it.
    """
    spec = study if isinstance(study, StudySpec) else load_spec(study)
    return trials_frame(spec, storage, **kwargs)


def export(df: pd.DataFrame, path: str | Path) -> Path:
    """Write `df` as CSV or Parquet (by suffix), atomically."""
    p = Path(path)
    if p.suffix == ".csv":
        atomic_write_text(p, df.to_csv(index=False))
    elif p.suffix == ".parquet":
        try:
            import pyarrow  # noqa: F401
        except ImportError:
            raise StudyError("writing Parquet needs pyarrow: pip install 'mpsearch[parquet]' "
                             f"(or write {p.with_suffix('.csv').name} instead)") from None
        buf = io.BytesIO()
        df.to_parquet(buf, index=False, engine="pyarrow")
        atomic_write_bytes(p, buf.getvalue())
    else:
        raise UsageError(f"cannot tell the format of {p.name!r}; name it .csv or .parquet")
    return p
