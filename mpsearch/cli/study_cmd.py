"""`mpsearch study run|show|report FILE`: batch studies over an Optuna storage (SQLite or PostgreSQL)."""

from __future__ import annotations

import argparse

import pandas as pd

from ..errors import StudyError
from ..study import load_spec, open_study, pareto_front, run_study, trials_frame, write_outputs
from ..study.spec import GRID_DIMS
from ..study.storage import redact, storage_url
from ._common import info
from ._registry import command


def _file_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("file", metavar="FILE", help="study file (TOML), e.g. studies/digits.toml")
    p.add_argument("--storage", metavar="URL",
                   help="Optuna storage: sqlite:///study.db or postgresql://user@host/db "
                        "(default: the file's storage key, else SQLite beside the file)")


def arguments(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="study_command", metavar="ACTION", parser_class=type(p))
    sub.required = True
    r = sub.add_parser("run", help="run (or resume) the study's trials; workers anywhere may share a storage")
    _file_args(r)
    r.add_argument("--workers", type=int, default=1, help="local worker processes (default 1)")
    r.add_argument("--report", metavar="DIR", nargs="?", const="", default=None,
                   help="afterwards write trials.csv, fronts.png and report.html (default: FILE-results/)")
    r.add_argument("--quiet", action="store_true", help="no progress bar")
    s = sub.add_parser("show", help="validate the file; print the grid, progress and Pareto fronts")
    _file_args(s)
    o = sub.add_parser("report", help="write trials.csv, fronts.png and report.html")
    _file_args(o)
    o.add_argument("-o", "--out", metavar="DIR", help="output folder (default: FILE-results/ beside FILE)")
    o.add_argument("--parquet", action="store_true", help="also write trials.parquet (needs pyarrow)")


def _report(spec, storage, out, parquet=False) -> None:
    paths = write_outputs(spec, storage, out or None, parquet=parquet)
    info("wrote " + ", ".join(str(p) for p in paths.values()))


def _show(spec, storage) -> None:
    grid = spec.grid()
    print(f"study {spec.name}: {len(grid)} trials = " + " × ".join(
        f"{len(v)} {k}" for k, v in [("models", spec.models), ("format sets", spec.formats),
                                     ("estimators", spec.estimators), ("hardware", spec.hardware),
                                     ("searchers", spec.searchers), ("budgets", spec.budgets)]))
    print("objectives: " + ", ".join(map(str, spec.objectives)) + f"; seed {spec.seed}")
    url = storage_url(spec, storage)
    try:
        st = open_study(spec, url, create=False)
    except StudyError as e:  # not run yet is a normal state for `show`
        print(f"storage {redact(url)}: {e}")
        return
    try:
        status = st.status()
    finally:
        st.close()
    print(f"storage {redact(url)}: {status['finished']}/{status['grid']} grid points finished; "
          f"{status['running']} running, {status['waiting']} waiting, {status['failed']} failed trials")
    df = trials_frame(spec, url)
    if len(df):
        names = [m.name for m in spec.objectives]
        front = pareto_front(df, spec.objectives, by=spec.series)
        # grid dimensions outside the series that vary (e.g. the format set) tell same-budget points apart
        others = [d for d in GRID_DIMS if d not in (*spec.series, "budget") and front[d].nunique() > 1]
        with pd.option_context("display.width", 200, "display.max_columns", 30):
            print(front[["trial", *spec.series, *others, "budget", *names]].to_string(index=False))


@command("study", "batch studies: run, show or report a grid of plans (Pareto fronts)", arguments)
def run(args: argparse.Namespace) -> int:
    spec = load_spec(args.file)
    if args.study_command == "run":
        results = run_study(spec, args.storage, workers=args.workers, progress=False if args.quiet else None)
        if not args.quiet:
            done = sum(r.get("completed", 0) for r in results)
            mine = f" ({done} trials run by this worker)" if args.workers <= 1 else ""
            info(f"study {spec.name}: done{mine}")
        if args.report is not None:
            _report(spec, args.storage, args.report)
    elif args.study_command == "show":
        _show(spec, args.storage)
    else:
        _report(spec, args.storage, args.out, args.parquet)
    return 0
