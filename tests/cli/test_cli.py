"""The CLI end to end on files, and one-line errors (no traceback, non-zero exit) for bad input."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import torch
from torch import nn

from mpsearch.cli import main
from mpsearch.cli.examples_cmd import export_example
from mpsearch.formats import get_format


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    return export_example("digits-cnn", tmp_path_factory.mktemp("digits"))


@pytest.fixture(scope="module")
def planned(files, tmp_path_factory):
    out = tmp_path_factory.mktemp("plan") / "plan.json"
    code = main(["plan", str(files["model"]), "--data", str(files["calibration"]), "--budget", "4bits",
                 "-o", str(out)])
    assert code == 0
    return out


def run_err(argv, capsys) -> tuple[int, str]:
    code = main(argv)
    err = capsys.readouterr().err.strip()
    return code, err


def test_plan_apply_eval_on_exported_files(files, planned, tmp_path, capsys):
    plan = json.loads(planned.read_text())
    assert plan["schema_version"] == 1 and plan["totals"]["avg_bits"] <= 4
    assert set(plan["assignments"]) == {"features.0", "features.3", "features.7", "classifier.1", "classifier.3"}
    q = tmp_path / "q.pt2"
    assert main(["apply", str(files["model"]), str(planned), "-o", str(q)]) == 0
    gm = torch.export.load(str(q)).module()
    fp = torch.export.load(str(files["model"])).module()
    for site, fmt in plan["assignments"].items():
        w = fp.get_parameter(f"{site}.weight")
        assert torch.equal(gm.get_parameter(f"{site}.weight"), get_format(fmt).quantize(w))
    capsys.readouterr()
    assert main(["eval", str(files["model"]), "--data", str(files["test"]), "--plan", str(planned)]) == 0
    out = capsys.readouterr().out
    assert "accuracy" in out and "plan" in out and "500 samples" in out


def test_console_script_prints_one_line_error(tmp_path):
    r = subprocess.run([sys.executable, "-m", "mpsearch", "plan", str(tmp_path / "missing.pt2"),
                        "--data", "x.npz", "--budget", "4MB"], capture_output=True, text=True)
    assert r.returncode == 1
    assert r.stderr.strip().count("\n") == 0 and "Traceback" not in r.stderr
    assert "does not exist" in r.stderr


def test_bad_inputs_each_one_line(files, planned, tmp_path, capsys):
    cal, model = str(files["calibration"]), str(files["model"])
    corrupt = tmp_path / "corrupt.pt2"
    corrupt.write_bytes(b"\x00not an archive")
    corrupt_pt = tmp_path / "corrupt.pt"
    corrupt_pt.write_bytes(b"garbage")
    pickled = tmp_path / "module.pt"
    torch.save(nn.Sequential(nn.Linear(64, 10)), pickled)
    no_sites = tmp_path / "nosites.pt"
    torch.save(nn.Sequential(nn.Flatten(), nn.ReLU()), no_sites)
    wrong_shape = tmp_path / "wrong.npz"
    np.savez(wrong_shape, x=np.zeros((4, 3, 32, 32), np.float32))
    other = tmp_path / "other.json"
    p = json.loads(planned.read_text())
    p["fingerprint"] = "sha256:" + "0" * 64
    other.write_text(json.dumps(p))

    cases = [
        (["plan", str(tmp_path / "nope.pt2"), "--data", cal, "--budget", "4MB"], "does not exist"),
        (["plan", str(corrupt), "--data", cal, "--budget", "4MB"], "cannot read"),
        (["plan", str(corrupt_pt), "--data", cal, "--budget", "4MB"], "corrupt"),
        (["plan", str(pickled), "--data", cal, "--budget", "4MB"], "--trust-pickle"),
        (["plan", model, "--data", cal, "--budget", "4 parsecs"], "cannot parse budget"),
        (["plan", model, "--data", cal, "--budget", "1KB"], "smallest achievable"),
        (["plan", model, "--data", str(wrong_shape), "--budget", "4MB"], "does not fit the model"),
        (["plan", str(no_sites), "--trust-pickle", "--data", cal, "--budget", "4MB"], "no Linear"),
        (["apply", model, str(other), "-o", str(tmp_path / "q.pt2")], "another model"),
        (["plan", model, "--data", str(tmp_path / "none.npz"), "--budget", "4MB"], "does not exist"),
        (["plan", model, "--data", cal, "--budget", "4MB", "--formats", "int4,int9"], "unknown format"),
    ]
    for argv, needle in cases:
        code, err = run_err(argv, capsys)
        assert code != 0, argv
        assert needle in err, (argv, err)
        assert "\n" not in err and "Traceback" not in err, (argv, err)


def test_trusted_pickle_loads(tmp_path, capsys):
    pickled = tmp_path / "module.pt"
    torch.save(nn.Sequential(nn.Flatten(), nn.Linear(64, 10)), pickled)
    code = main(["sites", str(pickled), "--trust-pickle"])
    assert code == 0 and "1" in capsys.readouterr().out


def test_usage_error_is_one_line(capsys):
    with pytest.raises(SystemExit) as e:
        main(["plan", "--example", "digits-cnn"])  # no --budget
    assert e.value.code == 2
    err = capsys.readouterr().err.strip()
    assert "--budget" in err and "\n" not in err


def test_state_dict_with_factory_and_example_data(tmp_path, capsys):
    from safetensors.torch import save_file

    from mpsearch.examples import load_example

    model = load_example("digits-cnn").model
    save_file(model.state_dict(), str(tmp_path / "sd.safetensors"))
    torch.save(model.state_dict(), tmp_path / "sd.pt")
    code, err = run_err(["sites", str(tmp_path / "sd.pt")], capsys)
    assert code == 2 and "--factory" in err
    factory = "mpsearch.examples.digits:DigitsCNN"
    assert main(["eval", str(tmp_path / "sd.safetensors"), "--factory", factory, "--example", "digits-cnn"]) == 0
    out = capsys.readouterr().out
    assert "0.998" in out and "held-out test split" in out
    code, err = run_err(["sites", str(tmp_path / "sd.pt"), "--factory", "nope.mod:fn"], capsys)
    assert code == 2 and "cannot find factory" in err
