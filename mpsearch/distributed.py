"""Several processes for one sensitivity estimate: which devices, which rank, the process group, the launch.

`kfac` spreads a decoder's blocks over ranks (`mpsearch.sensitivity.streaming`): each rank holds a
contiguous share of the blocks and passes the boundary activations on with point-to-point sends. The
engine is `torch.distributed`: NCCL between GPUs (NVLink multicast kept off: `NCCL_NVLS_ENABLE=0` is
set before NCCL starts, and no multicast API is called), gloo between CPU processes, and a gloo group
for the small control messages (estimate jobs and their rows, as pickled objects) on either.

Two ways in, one code path:

* `--devices cuda:0,cuda:1` (or `cpu,cpu`, or `--world-size N`): this process is rank 0 and starts
  the others as subprocesses running the same command, with torchrun's environment variables
  (RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR, MASTER_PORT) set;
* `torchrun --nproc-per-node N -m mpsearch ...`: every process reads those variables.

Rank 0 does everything that is not a decoder block (data, embeddings and head, the search, writing);
the other ranks serve estimate jobs until rank 0 says stop, and write nothing.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import torch

from .errors import MpsearchError, UsageError

# a rank waits for the next job while rank 0 loads data and builds its tables: minutes on a large model
TIMEOUT = timedelta(seconds=float(os.environ.get("MPSEARCH_DIST_TIMEOUT", 4 * 3600)))
_CURRENT: Ranks | None = None


class RankFailed(MpsearchError):
    """Another rank stopped in the middle of a run (its own message says why)."""


@contextmanager
def _peers() -> Iterator[None]:
    """A lost connection to another rank, as one line (gloo says "Connection closed by peer")."""
    try:
        yield
    except RuntimeError as e:
        raise RankFailed(f"another rank stopped ({str(e).strip().splitlines()[0][:160]}); its own message above "
                         "says why: fix that and rerun") from e


def current() -> Ranks | None:
    """The ranks of the running session (None: one process)."""
    return _CURRENT


def share(n_blocks: int, world: int, rank: int) -> range:
    """Rank `rank`'s contiguous blocks: `n_blocks` split as evenly as possible, the extra ones to the
    last ranks (rank 0 also runs the embeddings and the head)."""
    if n_blocks < world:
        raise UsageError(f"the model has {n_blocks} decoder blocks, too few for {world} devices; "
                         f"use at most {n_blocks} devices")
    base, extra = divmod(n_blocks, world)
    start = rank * base + max(0, rank - (world - extra))
    return range(start, start + base + (rank >= world - extra))


def parse_devices(spec: str | None, world_size: int | None = None) -> list[str] | None:
    """The device of each rank from `--devices` (`cuda:0,cuda:1`, `cpu,cpu`, `cuda` = every GPU) and
    `--world-size` (N copies of one device; N GPUs or N CPU processes by default); None when neither."""
    if spec is None and world_size is None:
        return None
    names = [s.strip() for s in (spec or "").split(",") if s.strip()]
    if world_size is not None:
        if world_size < 1:
            raise UsageError(f"--world-size must be at least 1 (got {world_size})")
        names = names or ["cuda" if torch.cuda.is_available() else "cpu"]
        if len(names) == 1:
            names = names * world_size
        elif len(names) != world_size:
            raise UsageError(f"--devices names {len(names)} devices but --world-size is {world_size}; "
                             "drop one of the two")
    if names == ["cuda"]:
        names = [f"cuda:{i}" for i in range(max(torch.cuda.device_count(), 1))]
    elif names and all(n == "cuda" for n in names):
        names = [f"cuda:{i}" for i in range(len(names))]
    return _check_devices(names)


def _check_devices(names: list[str]) -> list[str]:
    try:
        devices = [torch.device(n) for n in names]
    except RuntimeError as e:
        raise UsageError(f"--devices {','.join(names)}: {str(e).splitlines()[0]}; "
                         "name cuda:0,cuda:1,... or cpu,cpu") from e
    if not devices:
        raise UsageError("--devices is empty; name cuda:0,cuda:1,... or cpu,cpu")
    kinds = {d.type for d in devices}
    if len(kinds) > 1:
        raise UsageError(f"--devices {','.join(names)} mixes {' and '.join(sorted(kinds))}; give only cuda "
                         "devices (NCCL) or only cpu (gloo)")
    kind = kinds.pop()
    if kind not in ("cpu", "cuda"):
        raise UsageError(f"--devices {kind} cannot be spread over; name cuda:0,cuda:1,... or cpu,cpu")
    if kind == "cuda":
        have = torch.cuda.device_count() if torch.cuda.is_available() else 0
        top = max(d.index or 0 for d in devices)
        if top >= have:
            fix = f"name at most cuda:0..cuda:{have - 1}" if have else "use cpu,cpu (gloo) on this machine"
            raise UsageError(f"--devices asks for cuda:{top} but this machine has {have} GPU(s); {fix}")
        if len({d.index or 0 for d in devices}) < len(devices):
            raise UsageError(f"--devices {','.join(names)} names a GPU twice; NCCL runs one rank per GPU, "
                             "name each once")
        return [f"cuda:{d.index or 0}" for d in devices]
    return ["cpu"] * len(devices)


def launched() -> bool:
    """Whether this process is one of several ranks started by torchrun or by a `--devices` run."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1 and "RANK" in os.environ


@dataclass(eq=False)
class Ranks:
    """This process's place in the session, and the messages between ranks."""

    rank: int
    world: int
    device: torch.device
    control: Any = None  # the gloo group for pickled objects (None: the default group, gloo itself)
    busy: bool = False  # rank 0: a job is out (a failure now cannot tell the others to stop)
    _pending: list = field(default_factory=list)

    @property
    def main(self) -> bool:
        return self.rank == 0

    def barrier(self) -> None:
        """Wait until every rank is here (e.g. done building its blocks, before rank 0 starts a clock)."""
        import torch.distributed as dist

        with _peers():
            dist.barrier(group=self.control)

    def submit(self, job) -> None:
        """Rank 0: hand a job to every rank (`next_job` receives it)."""
        import torch.distributed as dist

        self.busy = True
        with _peers():
            dist.broadcast_object_list([job], src=0, group=self.control)

    def next_job(self):
        """The next job from rank 0 (None: stop)."""
        import torch.distributed as dist

        box = [None]
        with _peers():
            dist.broadcast_object_list(box, src=0, group=self.control)
        return box[0]

    def collect(self, result) -> list | None:
        """Every rank's result of the job, in rank order, on rank 0 (None elsewhere)."""
        import torch.distributed as dist

        out = [None] * self.world if self.main else None
        with _peers():
            dist.gather_object(result, out, dst=0, group=self.control)
        self.busy = False
        return out

    def send(self, tensor: torch.Tensor, dst: int, tag: int) -> None:
        """Send without waiting (`flush` waits for every send)."""
        import torch.distributed as dist

        t = tensor.detach().contiguous()
        self._pending.append((t, dist.isend(t, dst, tag=tag)))

    def flush(self) -> None:
        with _peers():
            for _, work in self._pending:
                work.wait()
        self._pending = []

    def receive_all(self, likes: list[torch.Tensor], src: int, tag: int) -> list:
        """Post every receive of a phase at once, in the order the peer sends (so NCCL, which runs one
        peer's sends and receives on one stream in order, cannot wait in a cycle); each item is a
        function that waits for its tensor."""
        import torch.distributed as dist

        def waiter(buf, work):
            def get():
                with _peers():
                    work.wait()
                return buf
            return get

        out = []
        for like in likes:
            buf = torch.empty_like(like, device=self.device)
            out.append(waiter(buf, dist.irecv(buf, src, tag=tag)))
        return out


def free_port() -> int:
    """A TCP port that was free a moment ago (bound to port 0, then released)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _init(rank: int, world: int, addr: str, port: int, device: torch.device) -> Ranks:
    import torch.distributed as dist

    if device.type == "cuda":
        os.environ["NCCL_NVLS_ENABLE"] = "0"  # no NVLink multicast (SHARP) objects
        torch.cuda.set_device(device)
    backend = "nccl" if device.type == "cuda" else "gloo"
    # torchrun's agent already serves the store on MASTER_PORT: join it (env://) rather than host another
    torchrun = launched() and "MPSEARCH_PARENT" not in os.environ
    dist.init_process_group(backend, init_method="env://" if torchrun else f"tcp://{addr}:{port}", rank=rank,
                            world_size=world, timeout=TIMEOUT)
    control = dist.new_group(backend="gloo", timeout=TIMEOUT) if backend == "nccl" else None
    return Ranks(rank, world, device, control)


def _spawn(command: list[str], devices: list[str], port: int) -> list[subprocess.Popen]:
    """Ranks 1..N-1 as subprocesses running `command`, with torchrun's variables and this process's
    thread count (the same GEMM blocking on every rank, so CPU results are bitwise those of one process)."""
    procs = []
    for rank in range(1, len(devices)):
        env = dict(os.environ, RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(len(devices)),
                   MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), NCCL_NVLS_ENABLE="0",
                   MPSEARCH_PARENT=str(os.getpid()), MPSEARCH_THREADS=str(torch.get_num_threads()))
        procs.append(subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL))
    return procs


class _Watchdog(threading.Thread):
    """Rank 0: a rank that dies leaves rank 0 blocked inside a receive that no Python exception can reach,
    so this thread reports it in one line and ends the process (and the other ranks) instead of a hang."""

    def __init__(self, procs: list[subprocess.Popen]):
        super().__init__(daemon=True)
        self.procs, self.stopped = procs, threading.Event()

    def run(self) -> None:
        while not self.stopped.wait(0.5):
            for rank, p in enumerate(self.procs, 1):
                rc = p.poll()
                if rc is not None and rc != 0 and not self.stopped.is_set():
                    print(f"mpsearch: error: rank {rank} of {len(self.procs) + 1} exited with code {rc} (its "
                          "message is above); fix that and rerun", file=sys.stderr, flush=True)
                    _end(self.procs)
                    os._exit(1)


def _orphan_guard() -> None:
    """A launched rank whose rank 0 is gone would wait for the timeout: leave as soon as the parent does."""
    parent = int(os.environ.get("MPSEARCH_PARENT", "0"))
    if not parent:
        return

    def watch():
        while os.getppid() == parent:
            time.sleep(1.0)
        os._exit(1)

    threading.Thread(target=watch, daemon=True).start()


def _end(procs: list[subprocess.Popen], wait_s: float = 0.0) -> None:
    deadline = time.monotonic() + wait_s
    for p in procs:
        try:
            p.wait(timeout=max(deadline - time.monotonic(), 0.01))
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


@contextmanager
def session(devices: list[str] | None, command: list[str] | None = None,
            before: Callable[[], object] | None = None) -> Iterator[Ranks | None]:
    """The ranks of this process for the block (None: one process, nothing started).

    Launched by torchrun or a `--devices` run (RANK/WORLD_SIZE set): join as that rank, on `devices[RANK]`
    or else `cuda:LOCAL_RANK` / `cpu`. Else with two or more `devices`: be rank 0 and start the others
    running `command` (the same command line), then run `before` (loading the model while they start:
    if it fails they are ended quietly and its error is the one reported). Rank 0 tells the others to
    stop when the block ends."""
    global _CURRENT
    procs: list[subprocess.Popen] = []
    if launched():
        rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
        local = int(os.environ.get("LOCAL_RANK", rank))
        name = _device_of(devices, rank, world, local)
        addr, port = os.environ.get("MASTER_ADDR", "127.0.0.1"), int(os.environ["MASTER_PORT"])
        if "MPSEARCH_THREADS" in os.environ:
            torch.set_num_threads(int(os.environ["MPSEARCH_THREADS"]))
        _orphan_guard()
    elif devices is not None and len(devices) > 1:
        if command is None:
            raise UsageError("several devices need the command each rank runs; launch with torchrun instead")
        rank, world, name, addr, port = 0, len(devices), devices[0], "127.0.0.1", free_port()
        procs = _spawn(command, devices, port)
    else:
        if before is not None:
            before()
        yield None
        return
    watch = _Watchdog(procs)
    try:
        if before is not None and not launched():
            before()
        watch.start()
        ranks = _init(rank, world, addr, port, torch.device(name))
    except BaseException:
        watch.stopped.set()
        _kill(procs)
        raise
    _CURRENT = ranks
    try:
        yield ranks
    finally:
        _CURRENT = None
        _close(ranks, procs, watch)


def _device_of(devices: list[str] | None, rank: int, world: int, local: int) -> str:
    """A launched rank's device: its entry of --devices (one per rank, or one per rank of this host under a
    multi-host torchrun), else `cuda:LOCAL_RANK`, else `cpu`."""
    if devices is None:
        return f"cuda:{local}" if torch.cuda.is_available() else "cpu"
    if len(devices) == world:
        return devices[rank]
    if len(devices) == int(os.environ.get("LOCAL_WORLD_SIZE", -1)):
        return devices[local]
    raise UsageError(f"--devices names {len(devices)} devices for {world} ranks; name one per rank (or drop "
                     "--devices under torchrun: each rank takes cuda:LOCAL_RANK)")


def _kill(procs: list[subprocess.Popen]) -> None:
    for p in procs:
        p.kill()
    _end(procs, 5.0)


def _close(ranks: Ranks, procs: list[subprocess.Popen], watch: _Watchdog) -> None:
    """Rank 0 says stop (unless a job is out: then the others cannot listen, and are ended), then every
    rank leaves the process group."""
    import torch.distributed as dist

    clean = not ranks.busy
    if ranks.main and clean:
        try:
            dist.broadcast_object_list([None], src=0, group=ranks.control)
        except RuntimeError:
            clean = False
    watch.stopped.set()
    if clean:
        dist.destroy_process_group()
        _end(procs, 120.0)
    else:
        _kill(procs)
