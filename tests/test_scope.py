"""--exclude / --pin: fixed sites keep exactly their format and still count in every total."""

import math

import pytest

import mpsearch
from mpsearch.errors import UsageError
from mpsearch.formats import get_format
from mpsearch.scope import scope

SITES = ["features.0", "features.3", "features.7", "classifier.1", "classifier.3"]
FAST = {"max_probes": 8}


def test_patterns_fnmatch_regex_and_errors():
    s = scope(SITES, exclude=["features.0"], pin=["classifier.*=int8", "re:features\\.[37]=int4_g32"])
    assert s.fixed == {"features.0": "bf16", "classifier.1": "int8", "classifier.3": "int8",
                       "features.3": "int4_g32", "features.7": "int4_g32"}
    assert s.rules == {"exclude": ["features.0"], "pin": ["classifier.*=int8", "re:features\\.[37]=int4_g32"]}
    assert scope(SITES, pin={"classifier.3": "INT8"}).fixed == {"classifier.3": "int8"}
    for kw, msg in [({"exclude": "encoder.*"}, "matches no site"), ({"pin": "feat*"}, "not PATTERN=FORMAT"),
                    ({"pin": "re:(=int8"}, "bad regular expression"),
                    ({"exclude": "features.0", "pin": "features.*=int4"}, "both --exclude")]:
        with pytest.raises(UsageError, match=msg) as e:
            scope(SITES, **kw)
        assert "\n" not in str(e.value)
    with pytest.raises(mpsearch.errors.FormatError, match="unknown format"):
        scope(SITES, pin="features.0=int9")


def test_plan_keeps_excluded_16bit_pins_exact_and_counts_them(digits):
    m = digits.model
    # int8 is not a candidate: it appears only where it is pinned
    plan = mpsearch.plan(m, digits.calibration, budget="5bits", formats="int2,int3,int4,bf16",
                         exclude="features.0", pin="classifier.*=int8", estimator_settings=FAST, guard_uniform=True)
    a = plan.assignments
    assert a["features.0"] == "bf16" and a["classifier.1"] == a["classifier.3"] == "int8"
    assert set(a[s] for s in ("features.3", "features.7")) <= {"int2", "int3", "int4", "bf16"}
    assert plan.provenance["exclude"] == ["features.0"] and plan.provenance["pin"] == ["classifier.*=int8"]
    # honest totals: every site at its storage (bf16 = 16 bits/weight), other parameters at 16 bits
    shapes = {s: tuple(m.get_parameter(f"{s}.weight").shape) for s in a}
    site_bits = sum(get_format(f.split(":")[0]).storage_bits(shapes[s]) for s, f in a.items())
    assert plan.totals["avg_bits"] == pytest.approx(site_bits / sum(math.prod(v) for v in shapes.values()))
    assert plan.totals["avg_bits"] <= 5 + 1e-9
    # every uniform plan the guard compared keeps the fixed sites at their format
    for name, u in plan.measured["uniform"].items():
        uni = {s: ("bf16" if s == "features.0" else "int8" if s.startswith("classifier") else name) for s in a}
        bits = sum(get_format(f).storage_bits(shapes[s]) for s, f in uni.items())
        assert u["avg_bits"] == pytest.approx(bits / sum(math.prod(v) for v in shapes.values()))


def test_pin_to_a_format_the_target_cannot_run_is_one_line(digits):
    with pytest.raises(UsageError, match="cannot run") as e:
        mpsearch.plan(digits.model, digits.calibration, budget="9bits", formats="int8,bf16", hardware="m55-u55",
                      pin="features.0=fp8_e4m3:fp8_e4m3", estimator_settings=FAST)
    assert "\n" not in str(e.value)


def test_cli_exclude_and_pin(tmp_path, capsys):
    from mpsearch.cli import main

    out = tmp_path / "p.json"
    rc = main(["plan", "--example", "digits-cnn", "--budget", "6bits", "--formats", "int4,int8,bf16",
               "--exclude", "features.0", "--pin", "classifier.3=int4", "--estimator-option", "max_probes=8",
               "--no-guard", "-o", str(out)])
    assert rc == 0
    p = mpsearch.Plan.load(out)
    assert p.assignments["features.0"] == "bf16" and p.assignments["classifier.3"] == "int4"
    rc = main(["plan", "--example", "digits-cnn", "--budget", "6bits", "--exclude", "encoder.*", "-o", str(out)])
    assert rc != 0
    assert "matches no site" in capsys.readouterr().err


def test_pareto_keeps_fixed_sites_in_every_plan_and_uniform_row(digits, digits_sensitivity):
    front = mpsearch.pareto(digits.model, digits.calibration, metric="bits", budgets=[3.5, 6.0],
                            exclude="features.0", pin="classifier.3=int8", sensitivity=digits_sensitivity,
                            progress=False)
    frame = front.points
    assert len(frame[frame.kind == "plan"]) >= 1 and len(frame[frame.kind == "uniform"]) == 7
    for a in frame.assignments:
        assert a["features.0"] == "bf16" and a["classifier.3"] == "int8"
    uni = frame[frame.kind == "uniform"].set_index("label")
    shapes = {s: tuple(digits.model.get_parameter(f"{s}.weight").shape) for s in SITES}
    fmt = {s: "bf16" if s == "features.0" else "int8" if s == "classifier.3" else "int2" for s in SITES}
    bits = sum(get_format(fmt[s]).storage_bits(shapes[s]) for s in SITES) / sum(math.prod(v) for v in shapes.values())
    assert uni.loc["uniform int2", "avg_bits"] == pytest.approx(bits)  # fixed sites count in the uniform row
