"""A study's trials in Optuna storage, shared safely by any number of worker processes.

The grid is enqueued as WAITING trials; workers pop them. Why that is safe:

* Optuna pops a waiting trial with `RDBStorage.set_trial_state_values(id, RUNNING)`, which reads the
  row with `SELECT ... FOR UPDATE` (models.TrialModel.find_or_raise_by_id) and returns False when the
  state is no longer WAITING; on PostgreSQL the row lock makes that compare-and-set atomic, so two
  workers never run one trial. SQLite ignores FOR UPDATE (Optuna says so at that line), so...
* ...every step that reads and then writes the queue (enqueue the missing grid points, fail stale
  trials, pop) runs under a study lock that dies with its holder: a PostgreSQL session-level advisory
  lock, or `flock` on a file beside the SQLite database. A killed worker can never leave it held.
* A killed worker's RUNNING trial stops sending heartbeats; after `grace_seconds` any worker marks
  it FAIL (`optuna.storages.fail_stale_trials`) and Optuna's `RetryHeartbeatStaleTrialCallback`
  enqueues a copy with the same grid attributes, so the point is re-run once: nothing is lost.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import threading
import warnings
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import optuna
from optuna.storages import RDBStorage, RetryHeartbeatStaleTrialCallback, fail_stale_trials
from optuna.trial import FrozenTrial, TrialState

from ..errors import StudyError
from .spec import GridPoint, StudySpec


@contextlib.contextmanager
def quiet_optuna() -> Iterator[None]:
    """No per-trial INFO lines under the progress bar, and no warnings that heartbeats and stale-trial
    retry are experimental in Optuna (they are what we rely on). Restores both on exit."""
    level = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            yield
    finally:
        optuna.logging.set_verbosity(level)


SUPPORTED = ("sqlite", "postgresql")


def redact(url: str) -> str:
    """The URL with any password hidden, for messages and reports."""
    from sqlalchemy.engine import make_url

    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # noqa: BLE001 - an unparsable URL is reported by `dialect`
        return url


def storage_url(spec: StudySpec, storage: str | None = None) -> str:
    """`--storage`, else the file's `storage` key, else SQLite beside the file; with a PostgreSQL driver
    chosen when the URL names none (SQLAlchemy's default, psycopg 3, may not be the one installed)."""
    import importlib.util

    from sqlalchemy.engine import make_url

    url = storage or spec.storage or spec.default_storage
    if dialect(url) == "postgresql" and "+" not in url.split("://", 1)[0]:
        drivers = [d for d in ("psycopg", "psycopg2") if importlib.util.find_spec(d) is not None]
        if not drivers:
            raise StudyError(f"{redact(url)} needs a PostgreSQL driver: pip install 'mpsearch[postgres]'")
        url = make_url(url).set(drivername=f"postgresql+{drivers[0]}").render_as_string(hide_password=False)
    return url


def _first_line(e: BaseException) -> str:
    return str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__


def dialect(url: str) -> str:
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        u = make_url(url)
    except ArgumentError as e:
        raise StudyError(f"--storage {url!r} is not a database URL; use sqlite:///study.db or "
                         "postgresql://user@host/db") from e
    name = u.get_backend_name()
    if name not in SUPPORTED:
        raise StudyError(f"storage {redact(url)!r} is {name}; studies run on {' or '.join(SUPPORTED)} "
                         "(sqlite:///file.db, postgresql://user@host/db)")
    if name == "sqlite" and u.database in (None, "", ":memory:"):
        raise StudyError("an in-memory SQLite storage is private to one process; give a file, "
                         "e.g. --storage sqlite:///study.db")
    return name


def sqlite_path(url: str) -> str:
    from sqlalchemy.engine import make_url

    return make_url(url).database


class StudyLock:
    """A cross-process mutex for one study, released by the OS or the server if its holder dies."""

    def __init__(self, url: str, study_name: str):
        self.kind = dialect(url)
        self._depth = 0
        self._mutex = threading.RLock()  # heartbeat threads never take it; this guards re-entry
        if self.kind == "sqlite":
            db = Path(sqlite_path(url))
            db.parent.mkdir(parents=True, exist_ok=True)
            self._file = open(f"{db}.lock", "a+")  # noqa: SIM115 - held for the worker's life
        else:
            import sqlalchemy

            try:
                self._engine = sqlalchemy.create_engine(url, poolclass=sqlalchemy.pool.NullPool)
                self._conn = self._engine.connect().execution_options(isolation_level="AUTOCOMMIT")
            except ImportError as e:
                raise StudyError(f"{redact(url)} needs its driver ({_first_line(e)}): "
                                 "pip install 'mpsearch[postgres]'") from e
            except sqlalchemy.exc.SQLAlchemyError as e:
                raise StudyError(f"cannot open storage {redact(url)} ({_first_line(e)}); "
                                 "check the URL and that the server runs") from e
            self._key = int.from_bytes(hashlib.sha256(study_name.encode()).digest()[:8], "big", signed=True)

    @contextlib.contextmanager
    def held(self) -> Iterator[None]:
        with self._mutex:
            if self._depth == 0:
                self._acquire()
            self._depth += 1
            try:
                yield
            finally:
                self._depth -= 1
                if self._depth == 0:
                    self._release()

    def _acquire(self) -> None:
        if self.kind == "sqlite":
            import fcntl

            fcntl.flock(self._file.fileno(), fcntl.LOCK_EX)
        else:
            import sqlalchemy

            self._conn.execute(sqlalchemy.text("SELECT pg_advisory_lock(:k)"), {"k": self._key})

    def _release(self) -> None:
        if self.kind == "sqlite":
            import fcntl

            fcntl.flock(self._file.fileno(), fcntl.LOCK_UN)
        else:
            import sqlalchemy

            self._conn.execute(sqlalchemy.text("SELECT pg_advisory_unlock(:k)"), {"k": self._key})

    def close(self) -> None:
        if self.kind == "sqlite":
            self._file.close()
        else:
            self._conn.close()
            self._engine.dispose()


def make_storage(url: str, spec: StudySpec | None = None) -> RDBStorage:
    """Optuna RDB storage with heartbeats and stale-trial retry set from the study's [run] table."""
    if dialect(url) == "sqlite":
        engine = {"connect_args": {"timeout": 60}}  # ride out another worker's write
    else:
        engine = {"pool_pre_ping": True}
    kw = {}
    if spec is not None:
        kw = {"heartbeat_interval": spec.run.heartbeat_seconds, "grace_period": spec.run.grace_seconds}
    try:
        with quiet_optuna():
            if spec is not None:
                kw["heartbeat_stale_trial_callback"] = RetryHeartbeatStaleTrialCallback(spec.run.max_retry)
            return RDBStorage(url, engine_kwargs=engine, **kw)
    except Exception as e:  # noqa: BLE001 - connection refused, bad credentials, unwritable file, ...
        raise StudyError(f"cannot open storage {redact(url)} ({_first_line(e)}); "
                         "check the URL and that the server runs") from e


@dataclass
class StoredStudy:
    """An opened study: the Optuna handle plus what workers need to claim and finish trials."""

    spec: StudySpec
    url: str
    storage: RDBStorage
    study: optuna.Study
    lock: StudyLock

    @property
    def study_id(self) -> int:
        return self.storage.get_study_id_from_name(self.study.study_name)

    def trials(self, states=None) -> list[FrozenTrial]:
        return self.study.get_trials(deepcopy=False, states=states)

    def status(self) -> dict[str, int]:
        """Grid points finished (complete, or failed for good), and trials running and waiting anywhere."""
        grid = {p.digest for p in self.spec.grid()}
        by_state: dict[str, set] = {}
        counts = Counter()
        for t in self.trials():
            by_state.setdefault(t.state.name, set()).add(t.user_attrs.get("digest"))
            counts[t.state.name] += 1
        live = by_state.get("WAITING", set()) | by_state.get("RUNNING", set())
        done = by_state.get("COMPLETE", set()) | (by_state.get("FAIL", set()) - live)
        return {"finished": len(done & grid), "grid": len(grid), "running": counts["RUNNING"],
                "waiting": counts["WAITING"], "complete": counts["COMPLETE"], "failed": counts["FAIL"]}

    def ensure_grid(self) -> int:
        """Enqueue every grid point that has no trial yet (any state); returns how many were added.

        Idempotent under the lock: run it as often as you like, from as many workers as you like.
        """
        with self.lock.held():
            have = {t.user_attrs.get("digest") for t in self.trials()}
            missing = [p for p in self.spec.grid() if p.digest not in have]
            for p in missing:
                self.study.enqueue_trial({}, user_attrs=p.attrs())
        return len(missing)

    def claim(self) -> tuple[int, GridPoint, FrozenTrial] | None:
        """Fail stale trials (queueing their retries), then pop the lowest-numbered waiting trial."""
        with self.lock.held(), quiet_optuna():
            fail_stale_trials(self.study)
            sid, grid = self.study_id, {p.digest for p in self.spec.grid()}
            for t in self.trials(states=(TrialState.WAITING,)):
                tid = self.storage.get_trial_id_from_study_id_trial_number(sid, t.number)
                if t.user_attrs.get("digest") not in grid:  # e.g. the retry of a point since edited away
                    self.storage.set_trial_user_attr(tid, "error", "no longer in the study file")
                    self.storage.set_trial_state_values(tid, state=TrialState.FAIL)
                    continue
                # Heartbeat first: a worker killed between these two calls leaves a WAITING trial (which
                # stale checks ignore), never a RUNNING one without a heartbeat (which they would miss).
                self.storage.record_heartbeat(tid)
                try:
                    if not self.storage.set_trial_state_values(tid, state=TrialState.RUNNING):
                        continue
                except optuna.exceptions.UpdateFinishedTrialError:
                    continue
                return tid, GridPoint.from_attrs(t.user_attrs), t
        return None

    def requeue(self, trial_id: int) -> None:
        """Fail a trial this worker is abandoning (Ctrl-C) and queue its retry, as a stale one would be."""
        with self.lock.held(), quiet_optuna():
            if self.storage.set_trial_state_values(trial_id, state=TrialState.FAIL):
                retry = self.storage.get_heartbeat_stale_trial_callback()
                retry(self.study, self.storage.get_trial(trial_id))

    def close(self) -> None:
        self.lock.close()
        self.storage.remove_session()
        self.storage.engine.dispose()


def open_study(spec: StudySpec, storage: str | None = None, *, create: bool = True) -> StoredStudy:
    """Create (or load) the study named in `spec` in `storage` (default: the file's, else SQLite beside
    the file)."""
    url = storage_url(spec, storage)
    if not create and dialect(url) == "sqlite" and not Path(sqlite_path(url)).is_file():
        raise StudyError(f"no study {spec.name!r} yet: {sqlite_path(url)} does not exist; run "
                         f"`mpsearch study run {spec.source.name}` first")
    lock = StudyLock(url, spec.name)
    try:
        # The first worker creates the tables and the study; the rest wait for the lock, then load.
        with lock.held(), quiet_optuna():
            st = make_storage(url, spec)
            directions = ["maximize" if m.maximize else "minimize" for m in spec.objectives]
            names = [m.name for m in spec.objectives]
            try:
                study = optuna.load_study(study_name=spec.name, storage=st)
            except KeyError:
                if not create:
                    raise StudyError(f"no study {spec.name!r} in {redact(url)}; run `mpsearch study run "
                                     f"{spec.source.name}` first (with the same --storage)") from None
                study = optuna.create_study(study_name=spec.name, storage=st, directions=directions,
                                            sampler=optuna.samplers.RandomSampler(seed=spec.seed))
                study.set_user_attr("objectives", names)
            stored = study.user_attrs.get("objectives")
            if stored != names or [d.name.lower() for d in study.directions] != directions:
                raise StudyError(f"study {spec.name!r} in {redact(url)} was made with objectives {stored}; "
                                 f"this file asks for {names}: give the study a new name = ... "
                                 "or use a new storage")
    except BaseException:
        lock.close()
        raise
    return StoredStudy(spec, url, st, study, lock)


def worker_id() -> str:
    return f"{os.uname().nodename}:{os.getpid()}"
