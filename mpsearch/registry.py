"""One registry type for everything selectable by name (estimators, searchers, cost models, objectives, knobs).

A `Registry` is a plain dict from name to class, so plug-ins (and tests) can add entries with ordinary dict
operations; what it adds is the decorator that registers a class, the sorted name list, and one error for an
unknown name that lists the choices and suggests close matches.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable
from typing import Any, Generic, TypeVar

from .errors import UsageError

T = TypeVar("T")


class Registry(dict[str, type[T]], Generic[T]):
    """Name → class, for one kind of plug-in (`kind` names it in error messages)."""

    def __init__(self, kind: str, *, ordered: bool = False, hint: str = ""):
        super().__init__()
        self.kind = kind
        self.ordered = ordered  # names() in registration order instead of sorted
        self.hint = hint  # appended to the unknown-name error, e.g. "(or a spec .toml file)"

    def register(self, *names: str) -> Callable[[type[T]], type[T]]:
        """Class decorator: register under `names`, or under the class's `name` attribute if none are given."""

        def deco(cls: type[T]) -> type[T]:
            for n in names or (cls.name,):
                self[n] = cls
            return cls

        return deco

    def names(self) -> list[str]:
        return list(self) if self.ordered else sorted(self)

    def lookup(self, name: str) -> type[T]:
        """The class registered as `name`; an unknown name is a one-line UsageError listing the choices."""
        if name in self:
            return self[name]
        close = difflib.get_close_matches(name, self.names(), n=3, cutoff=0.6)
        maybe = f" (did you mean {' or '.join(repr(c) for c in close)}?)" if close else ""
        known = ", ".join(self.names()) or "none installed"
        hint = f" {self.hint}" if self.hint else ""
        raise UsageError(f"unknown {self.kind} {name!r}{maybe}; choose one of: {known}{hint}")

    def create(self, name: str, **settings: Any) -> T:
        """An instance of the class registered as `name`, built with `settings`."""
        return self.lookup(name)(**settings)
