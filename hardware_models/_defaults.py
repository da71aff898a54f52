"""The candidate formats `plan` searches when none are given: those the hardware target runs well.

A bundled or user spec lists them as `default_formats = [...]` (top level of its TOML); without a
target (or for a spec that lists none) the default is `mpsearch.formats.DEFAULT_FORMATS`.
"""

from __future__ import annotations

from ._analytical import get
from ._base import CostModel


def default_formats(hardware: str | CostModel | None) -> tuple[list[str], str]:
    """(format names, where they come from: for the plan's provenance)."""
    from mpsearch.formats import DEFAULT_FORMATS, get_choice

    hw = get(hardware)
    spec = getattr(hw, "spec", None)
    names = list(getattr(spec, "default_formats", ()) or ())
    if not names:
        why = "no hardware target" if hw is None else f"{hw.name} names no default_formats"
        return list(DEFAULT_FORMATS), f"mpsearch default ({why})"
    for n in names:
        get_choice(n)  # a typo in a spec file: FormatError naming the close matches
    return names, f"default_formats of hardware spec {spec.name}"
