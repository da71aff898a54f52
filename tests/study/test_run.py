"""A study on SQLite, in process: the grid runs once, resumes after an interruption without duplicates,
records failures, extends when the file grows, and yields the DataFrame, CSV/Parquet, PNG and HTML."""

from __future__ import annotations

import io
import re
import sys
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest
from optuna.trial import TrialState
from PIL import Image

from mpsearch import hardware_models, load_study
from mpsearch.cli import main
from mpsearch.errors import StudyError
from mpsearch.hardware_models import CostModel
from mpsearch.study import export, load_spec, open_study, pareto_front, plot_fronts, run_study
from mpsearch.study.evaluate import Evaluator
from mpsearch.study.plot import png_bytes

from .conftest import write_study


def _trials(spec):
    st = open_study(spec, create=False)
    try:
        return st.trials()
    finally:
        st.close()


def test_run_resume_and_every_output(tiny_study, tmp_path, capsys):
    out = tmp_path / "out"
    # Two local worker processes share the SQLite file (the flock serializes their claims).
    assert main(["study", "run", str(tiny_study), "--workers", "2", "--quiet", "--report", str(out)]) == 0
    spec = load_spec(tiny_study)
    assert len(_trials(spec)) == len(spec.grid())  # nothing ran twice
    df = load_study(tiny_study)
    assert sorted(df.key) == sorted(p.key for p in spec.grid()) and (df.state == "COMPLETE").all()
    # Every plan keeps its budget, was scored on the held-out split, and loses little at 6 bits.
    assert (df.avg_bits <= df.budget.str.replace("bits", "").astype(float) + 1e-9).all()
    assert set(df.eval_split) == {"test"} and df.fp_accuracy.nunique() == 1
    assert (df[df.budget == "6bits"].accuracy >= df.fp_accuracy.iloc[0] - 0.01).all()

    numbers = sorted(t.number for t in _trials(spec))
    assert main(["study", "run", str(tiny_study), "--quiet"]) == 0  # resume of a finished study: no-op
    assert sorted(t.number for t in _trials(spec)) == numbers

    assert main(["study", "show", str(tiny_study)]) == 0
    shown = capsys.readouterr().out
    assert "8/8 grid points finished; 0 running, 0 waiting, 0 failed" in shown

    front = pareto_front(df, spec.objectives, by=spec.series)
    assert len(front) >= 2
    page = (out / "report.html").read_text()
    for r in front.itertuples():  # the HTML lists every Pareto point, with its plan's formats
        row = re.search(rf'<tr id="trial-{r.trial}">(.*?)</tr>', page).group(1)
        assert f">{r.estimator}<" in row and f">{r.budget}<" in row and f">{r.bytes:.5g}<" in row
    assert page.count('<tr id="trial-') == len(front)
    assert "Per-layer formats" in page and "features.0" in page and "Estimator comparison" in page
    assert "data:image/png;base64," in page and "<script" not in page

    csv = pd.read_csv(out / "trials.csv")
    assert sorted(csv.key) == sorted(df.key) and {"bytes", "accuracy", "assignments"} <= set(csv.columns)

    png = Image.open(out / "fronts.png")
    assert png.size[0] > 300 and "accuracy" in png.text["Description"] and "bytes" in png.text["Description"]
    pixels = np.asarray(png.convert("L"))
    assert (pixels < 128).mean() > 0.005  # something is drawn
    fig = plot_fronts(df, spec.objectives, spec.series)
    (ax,) = fig.axes
    assert ax.get_xlabel().startswith("bytes") and ax.get_ylabel().startswith("accuracy on test")
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert {"digits-cnn · none · hessian-a", "digits-cnn · none · hessian-b"} <= set(legend)

    export(df, tmp_path / "t.parquet")
    back = pd.read_parquet(tmp_path / "t.parquet")
    pd.testing.assert_frame_equal(back, df, check_dtype=False)


def test_parquet_without_pyarrow_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "pyarrow", None)
    with pytest.raises(StudyError, match=r"Parquet needs pyarrow: pip install 'mpsearch\[parquet\]'"):
        export(pd.DataFrame({"a": [1]}), tmp_path / "x.parquet")
    assert not (tmp_path / "x.parquet").exists()


def test_interrupted_run_resumes_without_duplicate_or_lost_trials(tmp_path, monkeypatch):
    study = write_study(tmp_path, estimators=1)
    spec = load_spec(study)
    real, calls = Evaluator.evaluate, []

    def flaky(self, point):
        calls.append(point.key)
        if len(calls) == 3:
            raise KeyboardInterrupt  # Ctrl-C in the middle of the third trial
        return real(self, point)

    monkeypatch.setattr(Evaluator, "evaluate", flaky)
    with pytest.raises(KeyboardInterrupt):
        run_study(spec, progress=False)
    states = sorted(t.state.name for t in _trials(spec))
    assert states == ["COMPLETE", "COMPLETE", "FAIL", "WAITING", "WAITING"]  # 3rd re-queued, 4th waits

    run_study(spec, progress=False)
    trials = _trials(spec)
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    assert sorted(t.user_attrs["key"] for t in complete) == sorted(p.key for p in spec.grid())
    (failed,) = [t for t in trials if t.state == TrialState.FAIL]
    (retry,) = [t for t in complete if t.system_attrs.get("retry_history") == [failed.number]]
    assert retry.user_attrs["key"] == calls[2]


def test_failed_point_is_recorded_not_retried_and_the_grid_can_grow(tmp_path):
    study = write_study(tmp_path, estimators=1, budgets='["1bits", "3bits"]')  # 1 bit/weight is infeasible
    spec = load_spec(study)
    run_study(spec, progress=False)
    df = load_study(spec, include_failed=True)
    bad = df[df.budget == "1bits"].iloc[0]
    assert bad.state == "FAIL" and "budget cannot be met" in bad.error
    st = open_study(spec, create=False)
    assert st.status()["finished"] == 2 and st.status()["waiting"] == 0
    st.close()

    study.write_text(study.read_text().replace('["1bits", "3bits"]', '["1bits", "3bits", "4bits"]'))
    grown = load_spec(study)
    run_study(grown, progress=False)  # only the new point runs; the failure is not retried
    df = load_study(grown, include_failed=True)
    assert sorted(zip(df.budget, df.state, strict=True)) == [
        ("1bits", "FAIL"), ("3bits", "COMPLETE"), ("4bits", "COMPLETE")]
    with pytest.raises(StudyError, match=r"was made with objectives \['bytes', 'accuracy'\]"):
        run_study(replace(grown, objectives=grown.objectives[::-1]), progress=False)
    study.write_text(study.read_text().replace("max_probes = 4", "max_probes = 5"))
    assert len(load_study(study)) == 0  # new estimator settings: no old trial passes as current


class _ToyNPU(CostModel):
    """Latency proportional to bit-operations; a second instance runs at twice the rate."""

    name = "toy-npu"
    metrics = ("latency", "energy")
    rate = 1e12

    def site_cost(self, site, choice):
        bops = site.macs * choice.weight.element_bits * choice.act_bits
        return {"latency": bops / self.rate, "energy": bops * 1e-15}


class _FastToyNPU(_ToyNPU):
    name = "toy-npu-2x"
    rate = 2e12


def test_hardware_targets_and_three_metric_fronts(tmp_path, monkeypatch):
    registry = sys.modules[hardware_models.__name__ + "._base"]._REGISTRY
    monkeypatch.setitem(registry, "toy-npu", _ToyNPU)
    monkeypatch.setitem(registry, "toy-npu-2x", _FastToyNPU)
    study = write_study(tmp_path, estimators=1, hardware='["toy-npu", "toy-npu-2x"]',
                        budgets='["3bits", "5bits"]',
                        objectives='["bytes:min", "latency:min", "accuracy:max"]')
    spec = load_spec(study)
    run_study(spec, progress=False)
    df = load_study(spec)
    slow, fast = (df[df.hardware == h].set_index("budget") for h in ("toy-npu", "toy-npu-2x"))
    assert np.allclose(slow.latency, 2 * fast.latency) and (slow.assignments == fast.assignments).all()
    fig = plot_fronts(df, spec.objectives, spec.series)
    assert [(a.get_xlabel().split()[0], a.get_ylabel().split()[0]) for a in fig.axes] == [
        ("bytes", "latency"), ("bytes", "accuracy"), ("latency", "accuracy")]
    assert "latency [s]" in fig.axes[0].get_ylabel()
    legend = {t.get_text() for t in fig.axes[0].get_legend().get_texts()}
    assert {"digits-cnn · toy-npu · hessian-a", "digits-cnn · toy-npu-2x · hessian-a"} <= legend
    assert Image.open(io.BytesIO(png_bytes(fig))).size[0] > 3 * 300


def test_waiting_trials_of_points_edited_away_are_not_run(tmp_path):
    study = write_study(tmp_path, estimators=1, budgets='["3bits", "4bits"]')
    st = open_study(load_spec(study))
    assert st.ensure_grid() == 2 and st.ensure_grid() == 0  # enqueued once, idempotently
    st.close()
    study.write_text(study.read_text().replace('["3bits", "4bits"]', '["3bits"]'))
    run_study(load_spec(study), progress=False)
    df = load_study(study, include_failed=True, current_only=False)
    assert sorted(zip(df.budget, df.state, df.error.fillna(""), strict=True)) == [
        ("3bits", "COMPLETE", ""), ("4bits", "FAIL", "no longer in the study file")]


def test_worker_says_each_note_once(caplog):
    """Every trial on a target repeats the same notes (the formats it cannot run); a worker prints each once."""
    import logging

    from mpsearch.study.worker import _once_each

    log = logging.getLogger("mpsearch")
    with caplog.at_level("WARNING", logger="mpsearch"), _once_each():
        for _ in range(3):
            log.warning("excluded on %s (unsupported): %s", "m55-u55", "fp8_e4m3")
        log.warning("excluded on %s (unsupported): %s", "orin", "nvfp4")
    log.warning("excluded on %s (unsupported): %s", "m55-u55", "fp8_e4m3")  # outside a worker: not filtered
    assert [r.getMessage() for r in caplog.records] == [
        "excluded on m55-u55 (unsupported): fp8_e4m3", "excluded on orin (unsupported): nvfp4",
        "excluded on m55-u55 (unsupported): fp8_e4m3"]


def test_show_names_the_format_set_of_each_front_point(tmp_path, capsys):
    """Two format sets share one front per series: `study show` adds the varying grid column, or two points
    at one budget would look the same."""
    p = write_study(tmp_path, estimators=1, budgets='["3bits", "4bits"]')
    per_tensor = 'int_pt = "int2_pt,int3_pt,int4_pt,int8,bf16"'
    p.write_text(p.read_text().replace('int = "int2,int3,int4,int8,bf16"',
                                       'int = "int2,int3,int4,int8,bf16"\n' + per_tensor))
    spec = load_spec(p)
    run_study(spec, progress=False)
    capsys.readouterr()
    assert main(["study", "show", str(p)]) == 0
    lines = capsys.readouterr().out.splitlines()
    header = next(i for i, line in enumerate(lines) if line.split()[:1] == ["trial"])
    assert lines[header].split() == ["trial", "model", "hardware", "estimator", "formats", "budget", "bytes",
                                     "accuracy"]
    front = pareto_front(load_study(spec), spec.objectives, by=spec.series)
    rows = [line.split() for line in lines[header + 1:]]
    assert {(r[4], r[5]) for r in rows} == set(zip(front.formats, front.budget))
