"""What every exporter shares: the plan's sites with their weights, atomic output, refusing what a format
cannot express (all offending sites named at once, never dropped silently)."""

from __future__ import annotations

import contextlib
import importlib
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from ..apply import _check, _param
from ..errors import ExportError
from ..formats import EXPERTS, ROWS, Choice, WeightLayout, get_choice
from ..model import site_layouts
from ..plan import Plan


@dataclass
class ExportResult:
    """What an exporter wrote and where its bytes went (`site_bytes` vs the plan's `predicted_site_bytes`)."""

    path: Path
    site_bytes: int
    predicted_site_bytes: int
    other_bytes: int
    notes: list[str] = field(default_factory=list)


@dataclass
class SiteWeight:
    site: str
    param: str
    choice: Choice
    weight: torch.Tensor
    record: dict
    layout: WeightLayout = ROWS  # the site's (`Site.layout`): MoE experts are (E·out, in) rows


def plan_weights(model: nn.Module, plan: Plan | str | Path) -> tuple[Plan, list[SiteWeight]]:
    """The plan (loaded and checked against `model`) and each site's weight, FP, on the CPU."""
    if not isinstance(plan, Plan):
        plan = Plan.load(plan)
    _check(model, plan)
    names = {id(p): n for n, p in model.named_parameters()}
    layouts = site_layouts(model)
    out = []
    for site, fmt in plan.assignments.items():
        p = _param(model, site)
        out.append(SiteWeight(site, names[id(p)], get_choice(fmt), p.detach().cpu().float(), plan.sites.get(site, {}),
                              layouts.get(site, ROWS)))
    return plan, out


def quantized_experts(w: SiteWeight, runtime: str) -> str | None:
    """Why `runtime`'s exporter refuses `w`: a quantized MoE experts weight it has no layout for (it loads
    experts per expert and projection, where mpsearch holds transformers 5's fused 3-D weight); None
    for any other site."""
    if w.layout != EXPERTS or w.choice.weight.is_full_precision:
        return None
    return (f"{runtime} has no layout for a quantized fused MoE experts weight; keep experts at bf16 "
            "with --pin '*experts*=bf16' or plan with the runtime's --target, whose profile keeps them 16-bit")


def refuse_unsupported(what: str, items: list[SiteWeight], why: Callable[[SiteWeight], str | None],
                       hint: str) -> None:
    """Raise one ExportError listing every site `why` rejects (the plan is never silently changed)."""
    bad = [(w.site, w.choice.name, r) for w in items if (r := why(w))]
    if bad:
        shown = "; ".join(f"{s} ({f}: {r})" for s, f, r in bad[:4])
        shown += f"; and {len(bad) - 4} more" if len(bad) > 4 else ""
        raise ExportError(f"{what} cannot express {len(bad)} site(s): {shown}; {hint}")


def need(module: str, extra: str = "deploy"):
    """Import an optional dependency, or fail naming the install command."""
    try:
        return importlib.import_module(module)
    except ImportError:
        pkg = module.split(".")[0].replace("_", "-")
        raise ExportError(f"this exporter needs the {pkg!r} package; pip install 'mpsearch[{extra}]'") from None


@contextlib.contextmanager
def atomic_dir(path: str | Path) -> Iterator[Path]:
    """Yield a temp directory beside `path`; on success it replaces `path` in one rename (a kill leaves
    the old output, or none, never half of a new one)."""
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.", suffix=".tmp"))
    try:
        yield tmp
        if out.is_dir():
            old = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.", suffix=".old"))
            os.replace(out, old / "x")
            os.replace(tmp, out)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


@contextlib.contextmanager
def atomic_file(path: str | Path) -> Iterator[Path]:
    """Yield a temp file path beside `path`, renamed over it on success."""
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=out.parent, prefix=f".{out.name}.", suffix=".tmp")
    os.close(fd)
    try:
        yield Path(tmp)
        os.replace(tmp, out)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def predicted_bytes(plan: Plan) -> int:
    return int(sum(r.get("bytes", 0) for r in plan.sites.values()))
