"""Deployment targets: restrict a search to what a runtime loads and runs, and check a plan against it.

`restrict(target, sites, choices)` runs before the search, so a plan made with a target is deployable
by construction; `violations(target, sites, assignments)` lists what a hand-edited or foreign plan
breaks, one line each (`mpsearch check`).
"""

from __future__ import annotations

from ..errors import UsageError
from ..formats import Choice, get_choice
from ..model import Site
from ._profile import Kernel, Target, get_target, target_names, traits
from ._ties import tie_groups

__all__ = ["Kernel", "Target", "candidates", "get_target", "keep_allowed", "restrict", "target_names", "tie_groups",
           "traits", "violations"]


def restrict(target: str | Target | None, sites: list[Site], choices: list[Choice]
             ) -> tuple[dict[str, list[Choice]] | None, list[list[str]], list[str]]:
    """(allowed choices per site, tie groups, notes) for `target`; (None, [], []) without a target.

    A tie group keeps only the choices every member may take. Raises UsageError when a site (or a
    group) is left with none, naming a choice to add."""
    t = get_target(target)
    if t is None:
        return None, [], []
    choices = [get_choice(c) for c in choices]
    allowed, dropped = {}, {}
    for s in sites:
        allowed[s.name] = []
        for c in choices:
            why = t.why_not(s, c)
            if why is None:
                allowed[s.name].append(c)
            else:
                dropped.setdefault(c.name, []).append((s.name, why))
    ties = tie_groups(t.ties, [s.name for s in sites])
    for g in ties:
        common = [c for c in allowed[g[0]] if all(c in allowed[n] for n in g[1:])]
        for n in g:
            for c in allowed[n]:
                if c not in common:
                    dropped.setdefault(c.name, []).append((n, f"tied to {g[0]} (one fused kernel)"))
            allowed[n] = common
    empty = [n for n, cs in allowed.items() if not cs]
    if empty:
        raise UsageError(f"no candidate format runs on {t.name} for site {empty[0]}"
                         f"{f' (and {len(empty) - 1} more)' if len(empty) > 1 else ''}; "
                         "add bf16 to --formats (or a format the profile lists: `mpsearch check --help`)")
    notes = []
    for name, where in dropped.items():
        sites_txt = ", ".join(n for n, _ in where[:3]) + (f" and {len(where) - 3} more" if len(where) > 3 else "")
        notes.append(f"{t.name}: {name} excluded on {sites_txt}: {where[0][1]}")
    if ties:
        notes.append(f"{t.name}: {len(ties)} tie group(s) share one format, e.g. {', '.join(ties[0])}")
    return allowed, ties, notes


def keep_allowed(table, allowed: dict[str, list[Choice]] | None):
    """Rows of a (site, format) table that `restrict` allows (all rows without a target)."""
    if allowed is None:
        return table
    ok = {(s, c.name) for s, cs in allowed.items() for c in cs}
    return table[[k in ok for k in zip(table.site, table.format)]].reset_index(drop=True)


def candidates(choices: list[Choice], allowed: dict[str, list[Choice]] | None, *, everywhere: bool = False
               ) -> list[Choice]:
    """The choices some site (or, `everywhere`, every site: the uniform plans) may take."""
    if allowed is None:
        return list(choices)
    test = all if everywhere else any
    return [c for c in choices if test(c in a for a in allowed.values())]


def violations(target: str | Target, sites: list[Site], assignments: dict[str, str]) -> list[str]:
    """One line per problem: a site whose format the runtime cannot run, a tie group split across formats."""
    t = get_target(target)
    by_name = {s.name: s for s in sites}
    out = []
    for name, fmt in assignments.items():
        if name not in by_name:
            out.append(f"{name}: not a site of this model")
            continue
        why = t.why_not(by_name[name], get_choice(fmt))
        if why:
            out.append(f"{name}: {fmt}: {why}")
    for g in tie_groups(t.ties, [s.name for s in sites]):
        fmts = {n: assignments.get(n) for n in g}
        if len(set(fmts.values())) > 1:
            out.append(f"{', '.join(g)}: must share one format on {t.name} (one fused kernel), got "
                       + ", ".join(f"{n.rpartition('.')[2]}={f}" for n, f in fmts.items()))
    return out

