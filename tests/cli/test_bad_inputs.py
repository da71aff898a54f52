"""Every bad input fails before the work: exit 1 or 2 (never 3, an internal error), exactly one stderr
line naming the problem, no traceback, and nothing written. Each case needs only a model load and
one forward pass on a few samples, so the table runs in seconds."""

from __future__ import annotations

import json
import os
import warnings
import zipfile

import numpy as np
import pytest
import torch

from mpsearch.cli import main
from mpsearch.cli.examples_cmd import export_example
from mpsearch.loading import load_model
from mpsearch.plan import Plan

SITES = ["features.0", "features.3", "features.7", "classifier.1", "classifier.3"]


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    """The digits CNN as files, bad data files, and a valid plan plus hand-edited variants."""
    d = tmp_path_factory.mktemp("bad")
    files = export_example("digits-cnn", d)
    cal = np.load(files["calibration"])
    x, y = cal["x"][:16], cal["y"][:16]

    def data(name, **kw):
        np.savez(d / f"{name}.npz", **({"x": x, "y": y} | kw))
        return str(d / f"{name}.npz")

    nan = x.copy()
    nan[3, 0, 4, 4] = np.nan
    inf = x.copy()
    inf[0, 0, 0, 0] = np.inf
    neg = y.copy()
    neg[2] = -1
    paths = {
        "nan": data("nan", x=nan), "inf": data("inf", x=inf),
        "strings": data("strings", x=np.array([["a"] * 64] * 16).reshape(16, 1, 8, 8)),
        "ints": data("ints", x=(x * 10).astype(np.int64)),
        "frac_labels": data("frac", y=y + 0.5), "neg_labels": data("neg", y=neg),
        "big_labels": data("big", y=y + 10), "two": data("two", x=x[:2], y=y[:2]),
        "one": data("one", x=x[:1], y=y[:1]),
    }
    model = load_model(files["model"]).module
    good = Plan.from_assignments(model, {s: "int8" for s in SITES}).to_json()

    def plan(name, edit):
        obj = json.loads(good)
        edit(obj)
        (d / f"{name}.json").write_text(json.dumps(obj))
        return str(d / f"{name}.json")

    def drop(key):
        return lambda o: o.pop(key)

    def put(key, value):
        return lambda o: o.__setitem__(key, value)

    def assign(site, fmt):
        return lambda o: o["assignments"].__setitem__(site, fmt)

    paths |= {
        "missing_site": plan("missing", lambda o: o["assignments"].pop("features.3")),
        "bn_site": plan("bn", assign("features.1", "int4")),
        "typo_site": plan("typo", assign("classifer.1", "int4")),
        "list_assign": plan("list", put("assignments", [["features.0", "int8"]])),
        "bad_format": plan("badfmt", assign("features.0", "int9")),
        "schema_str": plan("s_str", put("schema_version", "1")),
        "schema_0": plan("s_0", put("schema_version", 0)),
        "schema_neg": plan("s_neg", put("schema_version", -3)),
        "schema_missing": plan("s_none", drop("schema_version")),
        "schema_new": plan("s_new", put("schema_version", 99)),
        "unknown_key": plan("ukey", put("assignment", {})),
        "good": plan("good", lambda o: None),
    }
    flipped = d / "flipped.pt2"  # weight bytes changed in place: only the zip CRC notices
    flipped.write_bytes(files["model"].read_bytes())
    with zipfile.ZipFile(flipped) as z:
        info = max((i for i in z.infolist() if "weights" in i.filename), key=lambda i: i.file_size)
    with open(flipped, "r+b") as f:
        f.seek(info.header_offset + 26)
        n, m = np.frombuffer(f.read(4), "<u2")
        f.seek(info.header_offset + 30 + int(n) + int(m) + 8)
        b = f.read(4)
        f.seek(-4, os.SEEK_CUR)
        f.write(bytes(v ^ 0xFF for v in b))
    static = d / "static.pt2"  # exported for batches of exactly 2
    torch.export.save(torch.export.export(model, (torch.from_numpy(x[:2]),)), str(static))
    paths |= {"flipped": str(flipped), "static": str(static), "model": str(files["model"]),
              "cal": str(files["calibration"]), "afile": str(d / "nan.npz")}
    return paths


def plan_argv(p, data="cal", budget="4bits"):
    return ["plan", p["model"], "--data", p[data], "--budget", budget]


# (id, argv from (paths, out dir), exit code, text the one line must contain)
CASES = [
    # data: values, dtypes, labels, sample count
    ("nan pixel", lambda p, o: plan_argv(p, "nan"), 1, "holds 1 non-finite value (NaN)"),
    ("inf pixel", lambda p, o: plan_argv(p, "inf"), 1, "non-finite value (Inf)"),
    ("string inputs", lambda p, o: plan_argv(p, "strings"), 1, "tokenize text first"),
    ("integer inputs to a CNN", lambda p, o: plan_argv(p, "ints"), 1, "inputs are integers (torch.int64)"),
    ("fractional labels", lambda p, o: plan_argv(p, "frac_labels"), 1, "labels are fractional"),
    ("negative labels", lambda p, o: plan_argv(p, "neg_labels"), 1, "labels include -1"),
    ("labels past the outputs", lambda p, o: plan_argv(p, "big_labels"), 1, "labels run up to 19"),
    ("two samples", lambda p, o: plan_argv(p, "two"), 1, "has 2 samples; the sensitivity estimate needs at least 8"),
    ("one sample", lambda p, o: plan_argv(p, "one"), 1, "has 1 sample;"),
    # budgets
    ("infinite budget", lambda p, o: plan_argv(p, budget="1e400MB"), 1, "not a finite number"),
    ("150%", lambda p, o: plan_argv(p, budget="150%"), 1, "above the 16-bit model (100%)"),
    ("bare number", lambda p, o: plan_argv(p, budget="4"), 1, "has no unit; write e.g. 4MB, 4bits or 4%"),
    ("memory above FP", lambda p, o: plan_argv(p, budget="1GB"), 1, "above the 16-bit model's"),
    ("bits above 16", lambda p, o: plan_argv(p, budget="20bits"), 1, "above the 16 bits/weight"),
    # estimator settings, checked when they are given
    ("micro_batch 0", lambda p, o: [*plan_argv(p), "--estimator", "fisher", "--estimator-option", "micro_batch=0"],
     2, "setting micro_batch must be a positive number of samples per forward, not 0"),
    # plan files against the model, in each verb that reads one
    *[(f"{verb}: site missing", lambda p, o, v=verb: [v, p["model"], p["missing_site"], "-o", str(o / "q.pt2")],
       1, "gives no format for site 'features.3'") for verb in ("apply", "export")],
    ("eval: site missing", lambda p, o: ["eval", p["model"], "--data", p["cal"], "--plan", p["missing_site"]],
     1, "gives no format for site 'features.3'"),
    ("plan names a BatchNorm weight", lambda p, o: ["apply", p["model"], p["bn_site"], "-o", str(o / "q.pt2")],
     1, "names 'features.1', which is not a quantizable site of this model (did you mean"),
    ("unknown site", lambda p, o: ["eval", p["model"], "--data", p["cal"], "--plan", p["typo_site"]],
     1, "did you mean classifier.1"),
    ("assignments as a list", lambda p, o: ["apply", p["model"], p["list_assign"], "-o", str(o / "q.pt2")],
     1, "'assignments' must map site name -> format name"),
    ("unknown format", lambda p, o: ["apply", p["model"], p["bad_format"], "-o", str(o / "q.pt2")], 1, "int9"),
    ("schema_version \"1\"", lambda p, o: ["apply", p["model"], p["schema_str"], "-o", str(o / "q.pt2")],
     1, "schema_version '1' (str); it must be an integer 1..1"),
    ("schema_version 0", lambda p, o: ["apply", p["model"], p["schema_0"], "-o", str(o / "q.pt2")],
     1, "schema version 0; versions start at 1"),
    ("schema_version -3", lambda p, o: ["apply", p["model"], p["schema_neg"], "-o", str(o / "q.pt2")],
     1, "schema version -3; versions start at 1"),
    ("schema_version missing", lambda p, o: ["apply", p["model"], p["schema_missing"], "-o", str(o / "q.pt2")],
     1, "has no 'schema_version'"),
    ("schema_version newer", lambda p, o: ["apply", p["model"], p["schema_new"], "-o", str(o / "q.pt2")],
     1, "newer than this mpsearch reads (1)"),
    ("unknown top-level key", lambda p, o: ["apply", p["model"], p["unknown_key"], "-o", str(o / "q.pt2")],
     1, "unknown key 'assignment' (did you mean 'assignments'?)"),
    # output paths, checked before the work
    ("plan -o a directory", lambda p, o: [*plan_argv(p), "-o", str(o)], 2, "is a directory"),
    ("plan -o under a file", lambda p, o: [*plan_argv(p), "-o", p["afile"] + "/plan.json"], 2, "is not a directory"),
    ("apply -o a directory", lambda p, o: ["apply", p["model"], p["good"], "-o", str(o)], 2, "is a directory"),
    ("export -o a directory", lambda p, o: ["export", p["model"], p["good"], "-o", str(o)], 2, "is a directory"),
    ("pareto -o under a file", lambda p, o: ["pareto", p["model"], "--data", p["cal"], "-o", p["afile"] + "/x"],
     2, "is not a directory"),
    # files
    ("pt2 with flipped weight bytes", lambda p, o: ["eval", p["flipped"], "--data", p["cal"]], 1, "fails its checksum"),
    # a .pt2 exported for one batch size is no longer bad input: loading adapts it (mpsearch.static_batch)
    ("factory that needs arguments",
     lambda p, o: ["sites", p["model"], "--factory", "torch.nn:Linear"], 2, "needs argument"),
]


@pytest.mark.parametrize("argv, code, needle", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_input_fails_cleanly_before_the_work(env, tmp_path, capsys, argv, code, needle):
    out = tmp_path / "out"
    out.mkdir()
    before = sorted(os.listdir(env["model"].rsplit("/", 1)[0]))
    got = main(argv(env, out))
    err = capsys.readouterr().err.strip()
    assert got == code, err
    assert needle in err, err
    assert err.count("\n") == 0 and "Traceback" not in err and "internal error" not in err, err
    assert os.listdir(out) == [], "nothing is written, no temp file left"
    assert sorted(os.listdir(env["model"].rsplit("/", 1)[0])) == before


def test_apply_pt2_is_quiet_and_writes_readable_files(env, tmp_path, capsys):
    """No torch FutureWarning, no warning about our temp name; files get the mode open() gives."""
    old = os.umask(0o022)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            assert main(["apply", env["model"], env["good"], "-o", str(tmp_path / "q.pt2")]) == 0
            assert main(["export", env["model"], env["good"], "-o", str(tmp_path / "q.safetensors")]) == 0
    finally:
        os.umask(old)
    assert [str(w.message) for w in caught] == []
    assert "Warning" not in capsys.readouterr().err
    assert sorted(os.listdir(tmp_path)) == ["q.pt2", "q.safetensors"]
    for f in ("q.pt2", "q.safetensors"):
        assert (tmp_path / f).stat().st_mode & 0o777 == 0o644
    a, b = load_model(tmp_path / "q.pt2").module, load_model(env["model"]).module
    assert not torch.equal(a.get_parameter("features.0.weight"), b.get_parameter("features.0.weight"))
