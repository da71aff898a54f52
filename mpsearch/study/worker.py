"""The worker loop: claim a waiting trial, keep its heartbeat, evaluate it, tell the storage; repeat
until no trial waits or runs anywhere. Any number of workers, on any machines, may run it at once."""

from __future__ import annotations

import logging
import math
import os
import subprocess
import sys
import threading
import time
from contextlib import contextmanager

from optuna.trial import TrialState
from tqdm.auto import tqdm

from ..errors import MpsearchError
from .evaluate import Evaluator
from .spec import StudySpec
from .storage import StoredStudy, open_study, quiet_optuna, storage_url, worker_id

log = logging.getLogger("mpsearch")


@contextmanager
def heartbeat(st: StoredStudy, trial_id: int):
    """Record the trial's heartbeat every `heartbeat_seconds` while the body runs."""
    stop = threading.Event()

    def beat():
        while not stop.wait(st.spec.run.heartbeat_seconds):
            st.storage.record_heartbeat(trial_id)

    t = threading.Thread(target=beat, name=f"heartbeat-{trial_id}", daemon=True)
    t.start()
    try:
        yield
    finally:
        stop.set()
        t.join()


def _progress_bar(spec: StudySpec, total: int, enabled: bool | None) -> tqdm:
    return tqdm(total=total, desc=f"study {spec.name}", unit="trial", dynamic_ncols=True,
                disable=None if enabled is None else not enabled)


def _refresh(bar: tqdm, st: StoredStudy, mine: int | None = None) -> dict[str, int]:
    status = st.status()
    bar.n = status["finished"]
    extra = {} if mine is None else {"this_worker": mine}
    bar.set_postfix(running=status["running"], waiting=status["waiting"], **extra, refresh=False)
    bar.refresh()
    return status


class _OnceFilter(logging.Filter):
    """Passes each distinct message once: every trial on a target repeats the same notes (e.g. which
    formats it cannot run), and one line says it."""

    def __init__(self):
        super().__init__()
        self.seen: set[str] = set()

    def filter(self, record: logging.LogRecord) -> bool:
        msg = record.getMessage()
        if msg in self.seen:
            return False
        self.seen.add(msg)
        return True


@contextmanager
def _once_each():
    logger, f = logging.getLogger("mpsearch"), _OnceFilter()
    logger.addFilter(f)
    try:
        yield
    finally:
        logger.removeFilter(f)


def run_worker(spec: StudySpec, storage: str | None = None, *, progress: bool | None = None,
               poll_seconds: float = 1.0) -> dict:
    """Work on the study until every grid point is finished; returns counts for this worker."""
    st = open_study(spec, storage)
    evaluator = Evaluator(spec)
    me = worker_id()
    done = failed = 0
    try:
        st.ensure_grid()
        with _progress_bar(spec, len(spec.grid()), progress) as bar, quiet_optuna(), _once_each():
            while True:
                claimed = st.claim()
                if claimed is None:
                    status = _refresh(bar, st, done)
                    if not status["running"] and not status["waiting"]:
                        break
                    # Others are still running trials: wait for them to finish or go stale (then retry).
                    time.sleep(min(poll_seconds, spec.run.heartbeat_seconds))
                    continue
                trial_id, point, frozen = claimed
                st.storage.set_trial_user_attr(trial_id, "worker", me)
                bar.set_description(f"study {spec.name}: {point.key}")
                try:
                    with heartbeat(st, trial_id):
                        result = evaluator.evaluate(point)
                except KeyboardInterrupt:
                    st.requeue(trial_id)
                    raise
                except Exception as e:  # noqa: BLE001 - record it on the trial; the study goes on
                    msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
                    if not isinstance(e, MpsearchError):
                        log.exception("trial %s failed", point.key)
                        msg = f"{type(e).__name__}: {msg}"
                    st.storage.set_trial_user_attr(trial_id, "error", msg)
                    st.study.tell(frozen.number, state=TrialState.FAIL)
                    tqdm.write(f"trial {frozen.number} ({point.key}) failed: {msg}", file=sys.stderr)
                    failed += 1
                else:
                    for k, v in result.items():
                        st.storage.set_trial_user_attr(trial_id, k, v)
                    values = [result["metrics"].get(m.name, math.nan) for m in spec.objectives]
                    st.study.tell(frozen.number, values)
                    done += 1
                _refresh(bar, st, done)
    finally:
        st.close()
    return {"worker": me, "completed": done, "failed": failed}


def run_study(spec: StudySpec, storage: str | None = None, *, workers: int = 1,
              progress: bool | None = None) -> list[dict]:
    """Run the study with `workers` local processes (1: in this process). More machines: start
    `mpsearch study run FILE --storage postgresql://...` on each; they share the queue."""
    if workers <= 1:
        return [run_worker(spec, storage, progress=progress)]
    url = storage_url(spec, storage)
    st = open_study(spec, url)  # create tables, the study and the queue once, before the children start
    try:
        st.ensure_grid()
    finally:
        st.close()
    cmd = [sys.executable, "-m", "mpsearch", "study", "run", str(spec.source), "--storage", url, "--quiet"]
    # Share the cores instead of oversubscribing them (torch spins its threads: N x all-cores thrashes).
    threads = str(max(1, (os.cpu_count() or 1) // workers))
    env = {"OMP_NUM_THREADS": threads, "MKL_NUM_THREADS": threads} | dict(os.environ)
    procs = [subprocess.Popen(cmd, env=env) for _ in range(workers)]
    try:
        st = open_study(spec, url)
        try:
            with _progress_bar(spec, len(spec.grid()), progress) as bar:
                while any(p.poll() is None for p in procs):
                    _refresh(bar, st)
                    time.sleep(1.0)
                _refresh(bar, st)
        finally:
            st.close()
    finally:
        for p in procs:
            if p.poll() is None:
                p.terminate()
            p.wait()
    bad = [p.returncode for p in procs if p.returncode]
    if bad:
        raise MpsearchError(f"{len(bad)} of {workers} workers exited with an error (codes {bad}); "
                            "rerun `mpsearch study run` to finish the study")
    return [{"worker": f"pid {p.pid}", "returncode": p.returncode} for p in procs]
