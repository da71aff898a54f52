"""Batch studies: a grid of plans (model × formats × estimator × hardware × searcher × budget) run by
any number of workers over one Optuna storage, reported as Pareto fronts (table, PNG, HTML).

    spec = mpsearch.study.load_spec("studies/digits.toml")
    mpsearch.study.run_study(spec)                  # resumable; more workers: same call elsewhere
    df = mpsearch.load_study("studies/digits.toml")  # pandas DataFrame of the trials
    front = mpsearch.study.pareto_front(df, ["bytes:min", "accuracy:max"], by=["estimator"])
"""

from .outputs import write_outputs
from .pareto import pareto_front, pareto_mask
from .plot import plot_fronts, save_png
from .report import render_report, write_report
from .results import export, load_study, trials_frame
from .spec import GridPoint, StudySpec, load_spec
from .storage import open_study
from .worker import run_study, run_worker

__all__ = [
    "GridPoint", "StudySpec", "export", "load_spec", "load_study", "open_study", "pareto_front",
    "pareto_mask", "plot_fronts", "render_report", "run_study", "run_worker", "save_png", "trials_frame",
    "write_outputs", "write_report",
]
