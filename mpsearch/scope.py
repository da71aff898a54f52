"""Which sites the search may choose for: `exclude` keeps sites 16-bit, `pin` fixes their format.

Patterns match site names (module paths, as `mpsearch sites` prints them): shell-style `fnmatch`
by default (`encoder.layer.*.attention.*`, `classifier*`), or a Python regular expression, matched
in full, after `re:` (`re:.*\\.(query|key)$`). A pin is `PATTERN=FORMAT` (or a {pattern: format}
dict); FORMAT is any choice name (`int8`, `int8:int8`, `bf16`). Excluded and pinned sites stay in
the plan and in every total (an excluded site costs its 16 bits in bytes and in avg bits), the
search just has one row for them. A pattern that matches no site is an error, so a typo cannot
silently leave a layer in the search.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Iterable
from dataclasses import dataclass, field

import pandas as pd

from .errors import UsageError
from .formats import Choice, get_choice


def _matcher(pattern: str):
    if pattern.startswith("re:"):
        try:
            rx = re.compile(pattern[3:])
        except re.error as e:
            raise UsageError(f"bad regular expression {pattern!r} ({e}); write e.g. 're:.*\\.query$'") from e
        return rx.fullmatch
    return lambda name: fnmatch.fnmatchcase(name, pattern)


def _patterns(value: str | Iterable[str] | None) -> list[str]:
    if value is None:
        return []
    return [value] if isinstance(value, str) else list(value)


def _pins(value: str | dict | Iterable[str] | None) -> list[tuple[str, str]]:
    if isinstance(value, dict):
        return [(str(k), str(v)) for k, v in value.items()]
    out = []
    for item in _patterns(value):
        pattern, sep, fmt = item.rpartition("=")
        if not sep or not pattern or not fmt:
            raise UsageError(f"--pin {item!r} is not PATTERN=FORMAT; write e.g. --pin 'classifier*=int8'")
        out.append((pattern, fmt))
    return out


@dataclass(frozen=True)
class Scope:
    """`fixed`: site -> the one choice name the search may give it; `rules`: what was asked (for the plan)."""

    fixed: dict[str, str] = field(default_factory=dict)
    rules: dict[str, list[str]] = field(default_factory=dict)

    def __bool__(self) -> bool:
        return bool(self.fixed)

    def choices(self, candidates: list[Choice]) -> list[Choice]:
        """The candidates plus any pinned format they lack (the sensitivity and costs need its rows)."""
        extra = [get_choice(f) for f in dict.fromkeys(self.fixed.values())]
        return list(candidates) + [c for c in extra if c not in candidates]

    def restrict(self, table: pd.DataFrame, candidates: list[Choice]) -> pd.DataFrame:
        """Rows the search may use: fixed sites keep only their format; formats that are not
        candidates (added for a pin) only on the sites pinned to them."""
        if not self.fixed:
            return table
        names = {c.name for c in candidates}
        want = table.site.map(self.fixed)
        keep = (want.isna() & table.format.isin(names)) | (want == table.format)
        return table[keep].reset_index(drop=True)

    def check_supported(self, candidates: list[Choice], runnable: list[Choice], target: str | None) -> list[Choice]:
        """The candidates the target runs; a fixed site's format that it cannot run is an error."""
        names = {c.name for c in runnable}
        bad = next(((s, f) for s, f in self.fixed.items() if f not in names), None)
        if bad:
            raise UsageError(f"site {bad[0]!r} is fixed to {bad[1]}, which {target or 'the target'} cannot run; "
                             "pin it to a format the target supports")
        return [c for c in candidates if c.name in names]

    def uniform(self, site_names: Iterable[str], fmt: str) -> dict[str, str]:
        """The uniform `fmt` plan with the fixed sites at their format."""
        return {s: self.fixed.get(s, fmt) for s in site_names}


def scope(site_names: list[str], exclude=None, pin=None, keep: str = "bf16") -> Scope:
    """Resolve `exclude` patterns (kept at `keep`) and `pin` rules against the site names."""
    fixed: dict[str, str] = {}
    why: dict[str, str] = {}
    for pattern in _patterns(exclude):
        hit = [s for s in site_names if _matcher(pattern)(s)]
        if not hit:
            raise UsageError(f"--exclude {pattern!r} matches no site; run `mpsearch sites` for the names")
        for s in hit:
            fixed[s], why[s] = keep, f"--exclude {pattern}"
    for pattern, fmt in _pins(pin):
        name = get_choice(fmt).name  # an unknown format: FormatError with the close matches
        hit = [s for s in site_names if _matcher(pattern)(s)]
        if not hit:
            raise UsageError(f"--pin {pattern!r} matches no site; run `mpsearch sites` for the names")
        for s in hit:
            if s in fixed and fixed[s] != name:
                raise UsageError(f"site {s!r} is both {why[s]} ({fixed[s]}) and --pin {pattern}={fmt}; "
                                 "narrow one of the patterns")
            fixed[s], why[s] = name, f"--pin {pattern}={fmt}"
    rules = {k: v for k, v in (("exclude", _patterns(exclude)), ("pin", [f"{p}={f}" for p, f in _pins(pin)])) if v}
    return Scope(fixed, rules)


def keep_format(candidates: list[Choice]) -> str:
    """The 16-bit format excluded sites keep: the first 16-bit candidate, else bf16."""
    return next((c.name for c in candidates if c.weight.is_full_precision), "bf16")
