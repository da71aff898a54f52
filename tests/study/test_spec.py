"""Study files: the shipped ones validate; each mistake is one line naming the key and the fix."""

from __future__ import annotations

from pathlib import Path

import pytest

from mpsearch.cli import main
from mpsearch.errors import StudyError
from mpsearch.examples import EXAMPLES
from mpsearch.study import load_spec
from mpsearch.study.spec import parse_spec

ROOT = Path(__file__).resolve().parents[2]
BASE = {"models": ["digits-cnn"], "budgets": ["3bits", "4bits"], "objectives": ["bytes", "accuracy"]}


def spec_of(**changes):
    raw = {**BASE, **changes}
    return parse_spec({k: v for k, v in raw.items() if v is not None}, Path("/tmp/s.toml"))


def test_shipped_digits_study_validates_into_its_grid():
    spec = load_spec(ROOT / "studies" / "digits.toml")
    grid = spec.grid()
    assert len(grid) == len(spec.models) * len(spec.formats) * len(spec.estimators) * len(spec.hardware) \
        * len(spec.searchers) * len(spec.budgets) == 16
    assert len({p.key for p in grid}) == len({p.digest for p in grid}) == 16
    assert [str(m) for m in spec.objectives] == ["bytes:min", "accuracy:max"]
    assert spec.default_storage == f"sqlite:///{ROOT / 'studies' / 'digits.db'}"
    # Trials sharing a sensitivity table are adjacent, so a worker computes each table once.
    groups = [(p.model, p.formats, p.estimator) for p in grid]
    assert groups == sorted(groups, key=groups.index)


def test_minilm_study_loads_or_names_the_missing_example():
    path = ROOT / "studies" / "minilm.toml"
    if "minilm-l6" in EXAMPLES:
        spec = load_spec(path)
        assert spec.models[0].example == "minilm-l6" and set(spec.formats) == {"per_channel", "group128"}
    else:
        with pytest.raises(StudyError, match=r"models\[0\]\.example: unknown example 'minilm-l6'"):
            load_spec(path)


def test_defaults_and_directions():
    spec = spec_of()
    assert [(m.name, m.maximize, m.measured) for m in spec.objectives] == [("bytes", False, False),
                                                                          ("accuracy", True, True)]
    assert spec.measure == ["accuracy"] and spec.hardware == ["none"]
    assert [e.label for e in spec.estimators] == ["hessian"] and spec.formats["default"][-1] == "bf16"


@pytest.mark.parametrize("changes, match", [
    ({"budget": ["3bits"]}, r"budget: unknown key; did you mean 'budgets'\?"),
    ({"budgets": ["3bits", "4bitz"]}, r"budgets\[1\]: cannot parse budget '4bitz'"),
    ({"budgets": ["latency=2ms"]}, r"budgets\[0\]: a latency budget needs a hardware target"),
    ({"budgets": ["3bits", "3bits"]}, r"budgets: '3bits' is listed twice"),
    ({"estimators": ["hesian"]}, r"estimators\[0\]\.name: unknown estimator 'hesian'; choose one of"),
    ({"estimators": ["hessian", "hessian"]}, r"estimators: label 'hessian' is used twice; give entries"),
    ({"searchers": ["annealing"]}, r"searchers\[0\]\.name: unknown searcher 'annealing'"),
    ({"estimators": [{"name": "hessian", "max_probe": 4}]},
     r"estimators\[0\]: estimator 'hessian' has no setting 'max_probe'; it takes .*max_probes"),
    ({"searchers": [{"name": "optuna", "trial": 5}]}, r"searchers\[0\]: search 'optuna' has no setting 'trial'"),
    ({"hardware": ["tpu9"]}, r"hardware\[0\]: unknown hardware target 'tpu9'"),
    ({"formats": "int4,int44"}, r"formats: .*int44"),
    ({"objectives": ["bytes"]}, r"objectives: a Pareto front needs two or three metrics, got 1"),
    ({"objectives": ["bytes", "speed"]}, r"objectives\[1\]: unknown metric 'speed'"),
    ({"objectives": ["bytes:up", "accuracy"]}, r"objectives\[0\]: direction 'up' must be min or max"),
    ({"objectives": ["latency", "accuracy"]}, r"objectives\[0\]: latency needs a hardware target"),
    ({"models": [{"example": "digits-cnn", "path": "m.pt2"}]}, r"models\[0\]: give exactly one of"),
    ({"models": [{"path": "/nonexistent/m.pt2", "data": "d.npz"}]},
     r"models\[0\]\.path: file .* does not exist"),
    ({"models": [{"example": "resnet"}]}, r"models\[0\]\.example: unknown example 'resnet'"),
    ({"models": [{"example": "digits-cnn", "batchsize": 3}]}, r"models\[0\]\.batchsize: unknown key; did you "
                                                              r"mean 'batch_size'\?"),
    ({"seed": "zero"}, r"seed: expected an integer"),
    ({"run": {"heartbeat_seconds": 10, "grace_seconds": 5}}, r"run\.grace_seconds: must exceed heartbeat"),
    ({"series": ["model", "budget"]}, r"series\[1\]: 'budget' is not a grid dimension"),
    ({"measure": ["acc"]}, r"measure\[0\]: unknown objective 'acc'"),
])
def test_mistakes_are_one_line_naming_the_key_and_fix(changes, match):
    with pytest.raises(StudyError, match=match) as e:
        spec_of(**changes)
    assert "\n" not in str(e.value) and str(e.value).startswith("/tmp/s.toml: ")


def test_missing_required_key():
    with pytest.raises(StudyError, match="budgets: missing"):
        parse_spec({"models": ["digits-cnn"], "objectives": ["bytes", "accuracy"]}, Path("s.toml"))


def test_digest_pins_settings_not_labels_of_other_points():
    a = spec_of(estimators=[{"name": "hessian", "max_probes": 8}]).grid()
    b = spec_of(estimators=[{"name": "hessian", "max_probes": 9}]).grid()
    c = spec_of(budgets=["3bits", "4bits", "5bits"]).grid()
    assert [p.key for p in a] == [p.key for p in b] and {p.digest for p in a}.isdisjoint(p.digest for p in b)
    assert [p.digest for p in spec_of().grid()] == [p.digest for p in c[:2]]  # adding a budget keeps the rest


def test_cli_prints_one_line_and_exits_nonzero(tmp_path, capsys):
    bad = tmp_path / "bad.toml"
    bad.write_text('models = ["digits-cnn"]\nbudgets = ["3bits"]\nobjectives = ["bytes", "acuracy"]\n')
    assert main(["study", "show", str(bad)]) == 1
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "objectives[1]: unknown metric 'acuracy'" in err
    bad.write_text("models = [\n")
    assert main(["study", "run", str(bad)]) == 1
    assert "not valid TOML" in capsys.readouterr().err
