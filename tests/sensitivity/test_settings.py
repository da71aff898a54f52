"""Estimator settings are checked, not ignored: a misspelt setting would silently run the default."""

import pytest

from mpsearch.cli import main
from mpsearch.errors import UsageError
from mpsearch.sensitivity import estimator_names, get_estimator


@pytest.mark.parametrize("name, bad, hint", [
    ("hessian", "max_probe", "max_probes"), ("fisher", "tol", "probes"), ("measured", "probes", "micro_batch")])
def test_unknown_setting_names_what_the_estimator_takes(name, bad, hint):
    with pytest.raises(UsageError, match=rf"estimator '{name}' has no setting '{bad}'; it takes .*{hint}"):
        get_estimator(name, **{bad: 1})


def test_every_estimator_accepts_its_declared_settings():
    for n in estimator_names():
        cls = type(get_estimator(n))
        assert get_estimator(n, **dict.fromkeys(cls.options, None), progress=False).settings["progress"] is False


def test_hutchinson_probes_where_hessian_takes_the_exact_ggn(digits_shared):
    """On the ReLU CNN `hessian` (auto) uses the exact GGN; `hutchinson` is Hutchinson as named."""
    import mpsearch

    ex = digits_shared
    auto = mpsearch.sensitivity(ex.model, ex.calibration, estimator="hessian", formats="int4", cache=False)
    hutch = mpsearch.sensitivity(ex.model, ex.calibration, estimator="hutchinson", formats="int4", max_probes=6,
                                 max_samples=64, cache=False)
    assert auto.settings["method"] == "ggn" and hutch.settings["method"] == "hutchinson"


def test_plan_cli_estimator_option(tmp_path, capsys):
    assert main(["plan", "--example", "digits-cnn", "--budget", "4bits", "--estimator-option", "max_probe=4",
                 "-o", str(tmp_path / "p.json")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "has no setting 'max_probe'" in err and not (tmp_path / "p.json").exists()
