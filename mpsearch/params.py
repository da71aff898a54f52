"""Typed plug-in settings: a plug-in is a dataclass whose fields are its settings, each with a default.

Why: settings that hide as `settings.get("tol", 0.05)` inside a method are invisible to the cache key,
the plan's provenance and the validation. Declared as fields, `get_params()` returns the effective
values (defaults included), an unknown or ill-typed setting is one `UsageError` that lists the valid
ones with their types and defaults, and text from the command line (`--estimator-option tol=0.1`) is
coerced to the declared type. Round trip, as scikit-learn's: `cls(**p.get_params()).get_params() ==
p.get_params()`.
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import types
import typing
from typing import Any, ClassVar, Literal, Union, get_args, get_origin

from .errors import UsageError

_NONE_WORDS = ("none", "null")
_TRUE, _FALSE = ("true", "yes", "on", "1"), ("false", "no", "off", "0")


class _Mismatch(ValueError):
    """A value does not fit a declared type (turned into a UsageError naming the setting)."""


def _is_union(tp) -> bool:
    return get_origin(tp) in (Union, types.UnionType)


def describe_type(tp) -> str:
    """A type as a user reads it: `int`, `float or none`, `auto|ggn|hutchinson`."""
    if tp is Any:
        return "any"
    if _is_union(tp):
        return " or ".join("none" if a is type(None) else describe_type(a) for a in get_args(tp))
    if get_origin(tp) is Literal:
        return "|".join(str(a) for a in get_args(tp))
    origin = get_origin(tp)
    if origin in (list, tuple):
        inner = [a for a in get_args(tp) if a is not Ellipsis]
        return f"list of {describe_type(inner[0])}" if inner else "list"
    if origin is not None:
        return getattr(origin, "__name__", str(origin))
    return getattr(tp, "__name__", str(tp))


def coerce(value, tp):
    """`value` as type `tp`, parsing text (`'8'` → 8 for int, `'none'` → None); raises _Mismatch."""
    if tp is Any:
        return value
    text = value.strip() if isinstance(value, str) else None
    if _is_union(tp):
        args = get_args(tp)
        if value is None or (text is not None and text.lower() in _NONE_WORDS and type(None) in args):
            if type(None) in args:
                return None
            raise _Mismatch
        for a in args:
            if a is type(None):
                continue
            try:
                return coerce(value, a)
            except _Mismatch:
                continue
        raise _Mismatch
    if get_origin(tp) is Literal:
        for a in get_args(tp):
            if value == a or (text is not None and text == str(a)):
                return a
        raise _Mismatch
    if tp is bool:
        if isinstance(value, bool):
            return value
        if text is not None and text.lower() in _TRUE + _FALSE:
            return text.lower() in _TRUE
        raise _Mismatch
    if tp in (int, float):
        if isinstance(value, bool):  # a flag is not a count
            raise _Mismatch
        if isinstance(value, (int, float)):
            if tp is float:
                return float(value)
            if isinstance(value, int) or value.is_integer():
                return int(value)
            raise _Mismatch
        if text is not None:
            try:
                return tp(text)
            except ValueError:
                raise _Mismatch from None
        raise _Mismatch
    if tp is str:
        if isinstance(value, str):
            return value.strip()
        raise _Mismatch
    origin = get_origin(tp) or tp
    if origin is tuple and isinstance(value, list):
        return tuple(value)
    if isinstance(origin, type) and isinstance(value, origin):
        return value
    raise _Mismatch


@dataclasses.dataclass(frozen=True)
class ParamSpec:
    """One declared setting: its name, type and default."""

    name: str
    type: Any
    default: Any

    def __str__(self) -> str:
        return f"{self.name} ({describe_type(self.type)}, default {self.default!r})"


class Plugin:
    """Base of every named plug-in (estimator, searcher, cost model, objective, autotune knob).

    Subclasses are `@dataclass`es; their fields are the settings. A subclass that adds no field may stay
    a plain class. `kind` and `name` appear in error messages ("estimator 'hessian' has no setting ...").
    """

    kind: ClassVar[str] = "plug-in"
    name: ClassVar[str] = ""

    def __new__(cls, *args, **settings):
        # Checked before the dataclass __init__ runs, so a wrong name is a UsageError, not a TypeError.
        specs = cls.param_specs()
        unknown = sorted(set(settings) - set(specs))
        if unknown:
            close = difflib.get_close_matches(unknown[0], list(specs), n=1)
            maybe = f"; did you mean {close[0]!r}?" if close else ""
            raise UsageError(f"{cls.kind} {cls.name!r} has no setting {unknown[0]!r}; it takes "
                             f"{cls.describe_params()}{maybe}")
        return super().__new__(cls)

    def __post_init__(self) -> None:
        for spec in self.param_specs().values():
            value = getattr(self, spec.name)
            try:
                setattr(self, spec.name, coerce(value, spec.type))
            except _Mismatch:
                raise UsageError(f"{self.kind} {self.name!r} setting {spec.name} must be "
                                 f"{describe_type(spec.type)}, not {value!r}; it takes "
                                 f"{self.describe_params()}") from None

    @classmethod
    def param_specs(cls) -> dict[str, ParamSpec]:
        """The declared settings, in declaration order."""
        return _specs(cls)

    @classmethod
    def describe_params(cls) -> str:
        """One line listing every setting with its type and default (for error messages and help)."""
        return ", ".join(str(s) for s in cls.param_specs().values()) or "no settings"

    def get_params(self) -> dict[str, Any]:
        """The effective settings: every declared one, defaults included."""
        return {n: getattr(self, n) for n in self.param_specs()}


@functools.cache
def _specs(cls: type) -> dict[str, ParamSpec]:
    if not dataclasses.is_dataclass(cls):
        return {}
    hints = typing.get_type_hints(cls)
    out = {}
    for f in dataclasses.fields(cls):
        if f.default is not dataclasses.MISSING:
            default = f.default
        elif f.default_factory is not dataclasses.MISSING:
            default = f.default_factory()
        else:
            raise TypeError(f"{cls.__name__}.{f.name}: a plug-in setting needs a default")
        out[f.name] = ParamSpec(f.name, hints.get(f.name, Any), default)
    return out
