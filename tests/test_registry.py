"""Every name-selected plug-in (estimator, search, hardware, objective, knob) goes through one Registry."""

import pytest

from mpsearch.errors import UsageError
from mpsearch.hardware_models import get as get_hardware
from mpsearch.registry import Registry
from mpsearch.search import get_searcher
from mpsearch.sensitivity import get_estimator


def test_register_names_and_create():
    reg: Registry[object] = Registry("widget", ordered=True)

    @reg.register()
    class Zeta:
        name = "zeta"

        def __init__(self, size=1):
            self.size = size

    reg.register("alpha", "a")(Zeta)
    assert reg.names() == ["zeta", "alpha", "a"]  # registration order when ordered
    plain: Registry[object] = Registry("widget")
    plain.register("b", "a")(Zeta)
    assert plain.names() == ["a", "b"]  # sorted otherwise
    assert reg.create("alpha", size=3).size == 3


@pytest.mark.parametrize("lookup, wrong, match", [
    (get_estimator, "hesian", r"unknown estimator 'hesian' \(did you mean 'hessian'\?\); choose one of: .*fisher"),
    (get_searcher, "ilpp", r"unknown search 'ilpp' \(did you mean 'ilp'\?\)"),
    (get_hardware, "h10", r"unknown hardware 'h10' \(did you mean 'h100'\?\).*\(or a spec \.toml file\)$"),
    (get_hardware, "tpu-v9", r"^unknown hardware 'tpu-v9'; choose one of: a100, "),
])
def test_unknown_name_is_one_line_with_choices(lookup, wrong, match):
    with pytest.raises(UsageError, match=match) as e:
        lookup(wrong)
    assert "\n" not in str(e.value)
