"""`kfac` over several processes (mpsearch.distributed): 2 gloo ranks on the CPU give the 1-process table
bit for bit; devices are checked before any process starts; only kfac is spread."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from mpsearch import distributed
from mpsearch.cli import main
from mpsearch.data import as_data
from mpsearch.errors import UsageError
from mpsearch.formats import parse_choices
from mpsearch.hf import prepare
from mpsearch.model import sites
from mpsearch.objectives import get_objective
from mpsearch.sensitivity import get_estimator

from .conftest import tiny, token_batch

ROOT = Path(__file__).resolve().parents[2]
TIMEOUT = 600  # two interpreters importing torch and transformers on a loaded 2-core machine


def _env() -> dict:
    return dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT), HF_HUB_OFFLINE="1")


def test_devices_are_checked_before_anything_starts(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 0)
    assert distributed.parse_devices(None) is None
    assert distributed.parse_devices("cpu,cpu") == ["cpu", "cpu"]
    assert distributed.parse_devices(None, 3) == ["cpu"] * 3
    assert distributed.parse_devices("cpu", 2) == ["cpu", "cpu"]
    for spec, world, says in [("cpu,cuda:0", None, "mixes cpu and cuda"),
                              ("cuda:0,cuda:1", None, r"0 GPU\(s\); use cpu,cpu"), ("cpu,cpu", 3, "--world-size is 3"),
                              ("mps,mps", None, "cannot be spread"),
                              (None, 0, "at least 1")]:
        with pytest.raises(UsageError, match=says):
            distributed.parse_devices(spec, world)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert distributed.parse_devices("cuda") == ["cuda:0", "cuda:1"]
    with pytest.raises(UsageError, match=r"cuda:2 but this machine has 2 GPU\(s\); name at most cuda:0..cuda:1"):
        distributed.parse_devices("cuda:0,cuda:2")
    with pytest.raises(UsageError, match="twice"):
        distributed.parse_devices("cuda:1,cuda:1")


def test_blocks_are_shared_contiguously_and_evenly():
    for n in range(1, 10):
        for world in range(1, n + 1):
            parts = [distributed.share(n, world, r) for r in range(world)]
            assert [i for p in parts for i in p] == list(range(n))
            sizes = [len(p) for p in parts]
            assert max(sizes) - min(sizes) <= 1 and sizes == sorted(sizes)  # extra blocks to the last ranks
    with pytest.raises(UsageError, match="use at most 2 devices"):
        distributed.share(2, 3, 0)


def test_the_schedule_changes_no_number():
    model = prepare(tiny("mixtral"))
    data = as_data(token_batch(5, 8), batch_size=5)
    choices = parse_choices("int3,int8", None)
    site_list = sites(model, data.first_x)
    tables = [get_estimator("kfac", micro_batch=2, schedule=s).estimate(
        model, site_list, choices, data, get_objective("cross_entropy"), seed=1) for s in ("blocks", "micro-batches")]
    assert tables[0].frame.equals(tables[1].frame)
    assert "schedule" not in tables[1].settings  # the cache key: one table whatever the schedule
    with pytest.raises(UsageError, match="schedule 'x'"):
        get_estimator("kfac", schedule="x").estimate(model, site_list, choices, data, get_objective("kl"))


def test_only_kfac_is_spread(capsys, tmp_path):
    assert main(["sensitivity", "--example", "digits-cnn", "--devices", "cpu,cpu", "-o", str(tmp_path / "t.csv")]) == 2
    assert "--devices spreads only 'kfac'" in capsys.readouterr().err
    assert main(["plan", "--example", "tiny-decoder", "--estimator", "fisher", "--budget", "4.5bits",
                 "--world-size", "2", "-o", str(tmp_path / "p.json")]) == 2
    assert "estimator 'fisher' runs in one process" in capsys.readouterr().err
    assert not list(tmp_path.iterdir())


def _one_process_and_two_ranks(args: list[str], one: Path, two: Path) -> None:
    """`mpsearch ARGS -o one` in this process (one thread, as each rank: the same GEMM blocking, the same
    bits), then `... --devices cpu,cpu -o two` over 2 gloo ranks in a subprocess; both must succeed."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        assert main([*args, "-o", str(one)]) == 0
    finally:
        torch.set_num_threads(threads)
    r = subprocess.run([sys.executable, "-m", "mpsearch", *args, "--devices", "cpu,cpu", "-o", str(two)],
                       capture_output=True, text=True, env=_env(), cwd=one.parent, timeout=TIMEOUT)
    assert r.returncode == 0, r.stderr[-3000:]


def test_two_gloo_ranks_give_the_one_process_table(checkpoints, tmp_path, capsys):
    torch.save(token_batch(6, 12), tmp_path / "tok.pt")
    args = ["sensitivity", str(checkpoints["llama"]), "--data", str(tmp_path / "tok.pt"), "--formats",
            "int2,int4,bf16", "--set", "micro_batch=2", "--no-cache"]  # 3 micro-batches: an odd half
    _one_process_and_two_ranks(args, tmp_path / "one.csv", tmp_path / "two.csv")
    one, two = (tmp_path / "one.csv").read_text(), (tmp_path / "two.csv").read_text()
    assert one == two
    assert len(one.splitlines()) == 1 + 16 * 3  # header, 16 sites (14 in the blocks, embeddings, head) × 3 formats
    assert sorted(p.name for p in tmp_path.iterdir()) == ["one.csv", "tok.pt", "two.csv"]  # rank 1 wrote nothing


def test_benchmark_spreads_the_same_layers_and_gets_the_same_table(tmp_path):
    r = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "llm_scale.py"), "--smoke", "--devices", "cpu,cpu",
                        "--layers", "3", "--out", str(tmp_path / "t.md")], capture_output=True, text=True,
                       env=_env(), cwd=tmp_path, timeout=TIMEOUT)
    assert r.returncode == 0, r.stderr[-3000:]
    table = (tmp_path / "t.md").read_text()
    assert "rank 0: blocks 0-0 on cpu" in table and "rank 1: blocks 1-2 on cpu" in table
    assert "tables equal: True" in table and "tables differ" not in table


def test_other_ranks_score_the_rounding_that_ships(checkpoints, tmp_path):
    """A GPTQ plan over 2 gloo ranks: rank 1 rounds its blocks with rank 0's GPTQ statistics (not to nearest),
    so every site's predicted error and the plan equal the one-process plan's."""
    import json

    torch.save(token_batch(6, 12), tmp_path / "tok.pt")
    args = ["plan", str(checkpoints["llama"]), "--data", str(tmp_path / "tok.pt"), "--formats", "int2,int4,bf16",
            "--rounding", "gptq", "--estimator", "kfac", "--estimator-option", "micro_batch=2", "--budget", "5bits",
            "--search", "ilp", "--no-cache", "--no-guard"]
    _one_process_and_two_ranks(args, tmp_path / "one.json", tmp_path / "two.json")
    one, two = (json.loads((tmp_path / f).read_text()) for f in ("one.json", "two.json"))
    assert one["provenance"]["rounding"] == two["provenance"]["rounding"]
    assert one["assignments"] == two["assignments"] and one["totals"] == two["totals"]
    assert one["sites"] == two["sites"]  # every site's predicted error, rank 1's blocks included
