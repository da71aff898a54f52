"""Several `mpsearch study run` workers on one real PostgreSQL study: every grid point runs exactly once,
a worker killed mid-trial is resumed without a duplicated or lost trial, and the front equals the one
the same study gives on SQLite."""

from __future__ import annotations

import math
import os
import signal
import subprocess
import sys
import time

from optuna.trial import TrialState

from mpsearch.errors import StudyError
from mpsearch.study import load_spec, load_study, open_study, pareto_front, run_study

from .conftest import WORKER_ENV, write_study


def _worker(study, url) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "mpsearch", "study", "run", str(study), "--storage", url, "--quiet"]
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=WORKER_ENV)


def _trials(spec, url):
    try:
        st = open_study(spec, url, create=False)
    except StudyError:  # the first worker has not created it yet
        return []
    try:
        return st.trials()
    finally:
        st.close()


def _finish(p: subprocess.Popen) -> None:
    out, _ = p.communicate(timeout=300)
    assert p.returncode == 0, out


def test_workers_share_postgres_study_survive_a_kill_and_match_sqlite(tmp_path, postgres_url):
    # hessian-a takes 16 probes, so a worker's first trial lasts seconds: long enough to kill it mid-trial.
    study = write_study(tmp_path, "shared", probes=16, budgets='["2.5bits", "3bits", "4bits"]')
    spec = load_spec(study)
    grid = sorted(p.key for p in spec.grid())

    a, b = _worker(study, postgres_url), _worker(study, postgres_url)  # two workers at once
    victim, deadline = None, time.monotonic() + 240
    while victim is None:
        assert a.poll() is None, a.communicate()[0]
        assert time.monotonic() < deadline, "worker A never started a trial"
        if any(t.state == TrialState.WAITING for t in _trials(spec, postgres_url)):
            victim = next((t for t in _trials(spec, postgres_url) if t.state == TrialState.RUNNING
                           and t.user_attrs.get("worker", "").endswith(f":{a.pid}")), None)
        time.sleep(0.1)
    os.kill(a.pid, signal.SIGKILL)  # no cleanup, no heartbeat: the trial stays RUNNING in the database
    a.wait()
    (still,) = [t for t in _trials(spec, postgres_url) if t.number == victim.number]
    assert still.state == TrialState.RUNNING

    resumed = _worker(study, postgres_url)  # resume worker A
    _finish(b)
    _finish(resumed)

    trials = _trials(spec, postgres_url)
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    assert sorted(t.user_attrs["key"] for t in complete) == grid  # every point once: none lost, none twice
    failed = [t for t in trials if t.state == TrialState.FAIL]
    assert [t.number for t in failed] == [victim.number]  # only the killed attempt...
    retry = [t for t in complete if t.user_attrs["key"] == victim.user_attrs["key"]]
    assert retry[0].system_attrs["retry_history"] == [victim.number]  # ...which was re-run once
    assert len(trials) == len(grid) + 1
    workers = {t.user_attrs["worker"] for t in complete}
    assert f"{os.uname().nodename}:{b.pid}" in workers or f"{os.uname().nodename}:{resumed.pid}" in workers

    # The same study file on SQLite (one in-process worker) gives the same trials and the same front.
    sqlite = f"sqlite:///{tmp_path / 'shared.db'}"
    run_study(spec, sqlite, progress=False)
    pg, sq = (load_study(spec, url).set_index("key").sort_index() for url in (postgres_url, sqlite))
    assert list(pg.index) == grid == list(sq.index)
    assert (pg.assignments == sq.assignments).all()
    for m in spec.objectives:
        pairs = zip(pg[m.name], sq[m.name], strict=True)
        assert all(math.isclose(x, y, rel_tol=1e-9) for x, y in pairs), m.name
    fronts = [pareto_front(df.reset_index(), spec.objectives, by=spec.series) for df in (pg, sq)]
    assert len(fronts[0]) >= 2
    assert fronts[0]["key"].tolist() == fronts[1]["key"].tolist()
    assert fronts[0]["assignments"].tolist() == fronts[1]["assignments"].tolist()
