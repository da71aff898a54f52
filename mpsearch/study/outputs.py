"""Everything a finished (or partly finished) study hands a person: trials.csv (and .parquet),
fronts.png and report.html, written atomically into one folder."""

from __future__ import annotations

from pathlib import Path

from ..io import atomic_write_bytes
from .plot import plot_fronts, png_bytes
from .report import write_report
from .results import export, trials_frame
from .spec import StudySpec
from .storage import redact, storage_url


def default_out_dir(spec: StudySpec) -> Path:
    return spec.source.with_name(f"{spec.source.stem}-results")


def write_outputs(spec: StudySpec, storage: str | None = None, out_dir: str | Path | None = None, *,
                  parquet: bool = False) -> dict[str, Path]:
    out = Path(out_dir) if out_dir else default_out_dir(spec)
    everything = trials_frame(spec, storage, include_failed=True)
    df = everything[everything.state == "COMPLETE"].reset_index(drop=True)
    failed = everything[everything.state == "FAIL"]
    paths = {"csv": export(everything, out / "trials.csv")}
    if parquet:
        paths["parquet"] = export(everything, out / "trials.parquet")
    fig = plot_fronts(df, spec.objectives, spec.series, title=f"study {spec.name}")
    png = png_bytes(fig)
    paths["png"] = out / "fronts.png"
    atomic_write_bytes(paths["png"], png)
    paths["html"] = write_report(out / "report.html", df=df, title=f"mpsearch study {spec.name}",
                                 objectives=spec.objectives, series=spec.series, png=png,
                                 description=spec.description, failed=failed, grid_size=len(spec.grid()),
                                 storage=redact(storage_url(spec, storage)))
    return paths
