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


def test_every_named_plug_in_table_is_one_registry_type():
    """Format families, output curvatures and the CLI's verbs use the same Registry as the plug-ins."""
    import sys

    from mpsearch.cli import _registry as cli_registry
    from mpsearch.formats import _base as formats_base
    from mpsearch.sensitivity import _curvature

    tables = {
        "format family": formats_base._FAMILIES, "output curvature": _curvature._CURVATURES,
        "command": cli_registry.COMMANDS, "estimator": sys.modules["mpsearch.sensitivity._base"]._REGISTRY,
        "search": sys.modules["mpsearch.search._base"]._REGISTRY,
    }
    for kind, reg in tables.items():
        assert isinstance(reg, Registry) and reg.kind == kind
    assert formats_base._FAMILIES.names() == ["int", "keep", "minifloat", "gguf", "mx", "nvfp4"]  # the parse order
    assert {"plan", "apply", "study"} <= set(cli_registry.COMMANDS)
    with pytest.raises(UsageError, match=r"unknown command 'plna' \(did you mean 'plan'\?\)"):
        cli_registry.COMMANDS.lookup("plna")


def test_primary_names_drop_aliases():
    reg: Registry[object] = Registry("widget")

    class A:
        name = "a"

    class B:
        name = "b"

    reg.register("a", "alias")(A)
    reg.register()(B)
    assert reg.names() == ["a", "alias", "b"] and reg.primary_names() == ["a", "b"]
