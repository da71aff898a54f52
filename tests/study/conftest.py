"""Fixtures for study tests: tiny study files on the bundled digits CNN, and a private PostgreSQL."""

from __future__ import annotations

import glob
import os
import pwd
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

# A tiny, fast grid: 2 estimators (a 4-probe Hessian is enough to rank 5 layers) x 4 budgets.
TINY = """
name = "{name}"
seed = 0
objectives = {objectives}
measure = ["accuracy", "cross_entropy"]
hardware = {hardware}
estimators = [{estimators}]
searchers = ["ilp"]
budgets = {budgets}
[[models]]
example = "digits-cnn"
[formats]
int = "int2,int3,int4,int8,bf16"
[run]
heartbeat_seconds = 1
grace_seconds = 2
max_retry = 3
"""


def write_study(folder: Path, name: str = "tiny", *, probes: int = 4, hardware: str = '["none"]',
                budgets: str = '["2.5bits", "3bits", "4bits", "6bits"]', estimators: int = 2,
                objectives: str = '["bytes:min", "accuracy:max"]') -> Path:
    """A study file on the digits CNN; `estimators` = how many of the two Hessian settings to use."""
    ests = [f'{{ name = "hessian", label = "hessian-a", min_probes = {probes}, max_probes = {probes} }}',
            '{ name = "hessian", label = "hessian-b", min_probes = 3, max_probes = 3, max_samples = 128 }']
    p = folder / f"{name}.toml"
    p.write_text(TINY.format(name=name, hardware=hardware, budgets=budgets,
                             estimators=", ".join(ests[:estimators]), objectives=objectives))
    return p


@pytest.fixture
def tiny_study(tmp_path) -> Path:
    return write_study(tmp_path)


def _pg_bin(name: str) -> str | None:
    found = shutil.which(name)
    if found:
        return found
    hits = glob.glob(f"/usr/lib/postgresql/*/bin/{name}")  # Debian keeps the server off PATH
    return max(hits, key=lambda h: [int(x) for x in re.findall(r"\d+", h.split("/")[4])], default=None)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def postgres_url():
    """A throw-away PostgreSQL server on loopback with its data in a private temp folder.

    PostgreSQL refuses to run as root, so as root the server runs as the 'postgres' OS user that the
    Debian package creates (.ci/run installs it). Skipped only when the server binaries are absent.
    """
    initdb, postgres = _pg_bin("initdb"), _pg_bin("postgres")
    if not initdb or not postgres:
        pytest.skip("PostgreSQL server binaries (initdb, postgres) not found; `apt-get install postgresql` "
                    "(.ci/run does) to run the multi-worker tests")
    psycopg2 = pytest.importorskip("psycopg2", reason="psycopg2 missing: pip install -e '.[test]'")
    user = {}
    if os.geteuid() == 0:
        try:
            pw = pwd.getpwnam("postgres")
        except KeyError:
            pytest.skip("running as root and no 'postgres' OS user to run the server as")
        user = {"user": pw.pw_uid, "group": pw.pw_gid, "extra_groups": []}
    root = Path(tempfile.mkdtemp(prefix="mpsearch-pg-"))
    data = root / "data"
    if user:
        os.chown(root, user["user"], user["group"])
    run = {"cwd": root, "stdout": subprocess.PIPE, "stderr": subprocess.STDOUT, **user}
    init = subprocess.run([initdb, "-D", str(data), "-U", "postgres", "--auth=trust", "-E", "UTF8",
                           "--no-sync"], **run, text=True)
    assert init.returncode == 0, init.stdout
    port = _free_port()
    log = open(root / "server.log", "w")  # noqa: SIM115 - closed at teardown
    if user:
        os.chown(root / "server.log", user["user"], user["group"])
    server = subprocess.Popen(
        [postgres, "-D", str(data), "-h", "127.0.0.1", "-p", str(port), "-k", str(root),
         "-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off"],
        cwd=root, stdout=log, stderr=subprocess.STDOUT, **user)
    url = f"postgresql+psycopg2://postgres@127.0.0.1:{port}/postgres"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                psycopg2.connect(host="127.0.0.1", port=port, user="postgres", dbname="postgres").close()
                break
            except psycopg2.OperationalError:
                if server.poll() is not None or time.monotonic() > deadline:
                    why = (root / "server.log").read_text()
                    raise RuntimeError(f"PostgreSQL did not start: {why}") from None
                time.sleep(0.2)
        yield url
    finally:
        server.send_signal(signal.SIGQUIT)  # immediate shutdown: the data is thrown away
        try:
            server.wait(30)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
        log.close()
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(autouse=True)
def one_torch_thread():
    """One intra-op thread here and in worker processes (WORKER_ENV): the same arithmetic everywhere,
    so SQLite and PostgreSQL runs agree bit for bit, and no thread thrashing on a shared 2-core box."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


WORKER_ENV = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
