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


def test_ill_typed_setting_is_one_line_naming_type_and_default():
    with pytest.raises(UsageError, match=r"^estimator 'hessian' setting max_probes must be int, not 'abc'; it takes "
                                         r".*max_probes \(int, default 200\)") as e:
        get_estimator("hessian", max_probes="abc")
    assert "\n" not in str(e.value)
    with pytest.raises(UsageError, match=r"setting method must be auto\|ggn\|hutchinson, not 'newton'"):
        get_estimator("hessian", method="newton")


def test_text_settings_are_coerced_to_the_declared_type():
    """What `--estimator-option K=V` passes (text) becomes the declared type; the defaults are explicit."""
    est = get_estimator("hessian", tol="0.1", max_probes="12", adaptive="false", probe_batch="none")
    p = est.get_params()
    assert (p["tol"], p["max_probes"], p["adaptive"], p["probe_batch"]) == (0.1, 12, False, None)
    assert type(p["tol"]) is float and type(p["max_probes"]) is int
    assert p["max_samples"] == 512 and p["method"] == "auto"  # defaults visible, not hidden in estimate()
    assert get_estimator("hutchinson").get_params()["method"] == "hutchinson"
    with pytest.raises(UsageError, match="must be int, not True"):
        get_estimator("hessian", max_probes=True)  # a bool is not a count


def test_default_and_explicit_default_share_one_cache_key(tiny):
    from mpsearch.data import as_data
    from mpsearch.formats import parse_choices
    from mpsearch.model import sites
    from mpsearch.objectives import get_objective
    from mpsearch.sensitivity.cache import cache_key

    model, x, y = tiny
    data, s, c, obj = as_data((x, y)), sites(model, x), parse_choices("int4", []), get_objective("cross_entropy")
    key = lambda est: cache_key(model, data, est, obj, s, c, 0)  # noqa: E731
    assert key(get_estimator("hessian")) == key(get_estimator("hessian", tol=0.05, max_probes="200"))
    assert key(get_estimator("hessian")) != key(get_estimator("hessian", tol=0.1))
    assert key(get_estimator("hessian")) == key(get_estimator("hessian", progress=False))  # display only


def test_every_estimator_round_trips_its_settings():
    for n in estimator_names():
        est = get_estimator(n, progress=False)
        assert type(est)(**est.get_params()).get_params() == est.get_params()
        assert est.get_params()["progress"] is False


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
    assert "did you mean 'max_probes'?" in err


def test_plan_cli_ill_typed_estimator_option(tmp_path, capsys):
    assert main(["plan", "--example", "digits-cnn", "--budget", "4bits", "--estimator-option", "max_probes=abc",
                 "-o", str(tmp_path / "p.json")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "setting max_probes must be int, not 'abc'" in err
    assert not (tmp_path / "p.json").exists()
