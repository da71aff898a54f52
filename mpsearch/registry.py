"""One registry type for everything selectable by name: estimators, searchers, cost models, objectives,
autotune knobs, format families, output curvatures and the CLI's verbs.

A `Registry` is a plain dict from name to entry (usually a class; a format family or a CLI verb registers
an instance), so plug-ins (and tests) can add entries with ordinary dict operations; what it adds is the
decorator that registers under a name and its aliases, the name list (sorted, or in registration order),
and one error for an unknown name that lists the choices and suggests close matches.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable
from typing import Any, Generic, TypeVar

from .errors import UsageError

T = TypeVar("T")


class Registry(dict[str, T], Generic[T]):
    """Name → entry, for one kind of plug-in (`kind` names it in error messages)."""

    def __init__(self, kind: str, *, ordered: bool = False, hint: str = ""):
        super().__init__()
        self.kind = kind
        self.ordered = ordered  # names() in registration order instead of sorted
        self.hint = hint  # appended to the unknown-name error, e.g. "(or a spec .toml file)"

    def register(self, *names: str) -> Callable[[T], T]:
        """Decorator: register under `names` (the first is the name, the rest aliases), or under the entry's
        `name` attribute if none are given."""

        def deco(entry: T) -> T:
            for n in names or (entry.name,):
                self[n] = entry
            return entry

        return deco

    def names(self) -> list[str]:
        return list(self) if self.ordered else sorted(self)

    def primary_names(self) -> list[str]:
        """One name per distinct entry (aliases dropped), in `names()` order."""
        seen: list = []
        out = []
        for n in self.names():
            if not any(self[n] is e for e in seen):
                seen.append(self[n])
                out.append(getattr(self[n], "name", "") or n)
        return out

    def lookup(self, name: str) -> T:
        """The entry registered as `name`; an unknown name is a one-line UsageError listing the choices."""
        if name in self:
            return self[name]
        close = difflib.get_close_matches(name, self.names(), n=3, cutoff=0.6)
        maybe = f" (did you mean {' or '.join(repr(c) for c in close)}?)" if close else ""
        known = ", ".join(self.names()) or "none installed"
        hint = f" {self.hint}" if self.hint else ""
        raise UsageError(f"unknown {self.kind} {name!r}{maybe}; choose one of: {known}{hint}")

    def create(self, name: str, **settings: Any):
        """An instance of the class registered as `name`, built with `settings`."""
        return self.lookup(name)(**settings)
