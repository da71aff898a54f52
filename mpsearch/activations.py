"""Activation quantization: calibrate per-tensor scales at plan time, fake-quantize site inputs at apply time.

A choice `WEIGHT:ACT` (e.g. `int8:int8`) also quantizes the input of the site's linear/conv op
with a per-tensor scale calibrated on the FP model: min-max by default, `_mse` (grid search of
the clip on the sampled values), `_octav`, or `_p{P}` (percentile), chosen by the ACT name. The
scales are stored in the plan (`plan.sites[site]["act_scale"]`, `"act_zero"` when asymmetric), so
`apply` needs no data. Embedding sites take integer ids: their activation part is a no-op.

One mechanism serves both model kinds: a function of the site's input runs just before the op,
as a forward pre-hook on an `nn.Module`'s layer, or as a node inserted before the aten op of a
`torch.export` graph module (which survives re-export, see `reexport`).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable

import torch
from torch import nn

from .data import CalibrationData
from .errors import PlanError
from .formats import Choice, Format, get_choice, get_format
from .model import Site, _graph_weight_nodes, _module_sites, _site_name, call_model, eval_mode

SAMPLE_CAP = 2**18  # sampled activation values kept per site for percentile / MSE calibration
ActParams = dict[str, dict[str, dict[str, float]]]  # site -> activation format name -> {'scale', 'zero'?}


class ActQuant:
    """Fake-quantizes a tensor with a calibrated per-tensor scale. Picklable, so a module carrying it
    as a hook can be saved with torch.save; `__name__` lets torch.fx use it as a node target."""

    __name__ = "mpsearch_act_quant"

    def __init__(self, fmt: str, params: dict[str, float]):
        self.fmt, self.params = fmt, dict(params)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return get_format(self.fmt).act_quantize(x, self.params)

    def __repr__(self) -> str:
        return f"ActQuant({self.fmt!r}, {self.params})"


class _Observer:
    """Records exact min/max and a seeded random sample of the values it sees; returns them unchanged."""

    __name__ = "mpsearch_act_observer"

    def __init__(self, per_call: int):
        self.per_call = per_call
        self.parts: list[torch.Tensor] = []
        self.gen = torch.Generator().manual_seed(0)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        v = x.detach().float().reshape(-1).cpu()
        if v.numel() > self.per_call:
            idx = torch.randint(0, v.numel(), (self.per_call,), generator=self.gen)
            v = torch.cat([v[idx], torch.stack(v.aminmax())])
        self.parts.append(v)
        return x

    def sample(self) -> torch.Tensor:
        return torch.cat(self.parts)


class _PreHook:
    """Forward pre-hook that passes the first input through `fn` (a named class so it pickles)."""

    def __init__(self, fn: Callable[[torch.Tensor], torch.Tensor]):
        self.fn = fn

    def __call__(self, module: nn.Module, args: tuple):
        return (self.fn(args[0]), *args[1:])


def insert(model: nn.Module, fns: dict[str, Callable[[torch.Tensor], torch.Tensor]]) -> Callable[[], None]:
    """Run `fns[site]` on each named site's input before its op; returns a function that undoes it.
    Embedding sites are skipped (their input is integer ids)."""
    modules = _module_sites(model)
    if modules:
        handles = [mod.register_forward_pre_hook(_PreHook(fns[_site_name(p)]))
                   for p, users in modules.items() for kind, mod in users
                   if kind != "embedding" and _site_name(p) in fns]

        def remove() -> None:
            for h in handles:
                h.remove()

        return remove
    if not isinstance(model, torch.fx.GraphModule):
        return lambda: None
    graph, added = model.graph, []
    for node, (kind, param) in _graph_weight_nodes(model).items():
        fn = fns.get(_site_name(param))
        if fn is None or kind == "embedding":
            continue
        src = node.args[0]
        with graph.inserting_before(node):
            new = graph.call_function(fn, (src,))
        node.replace_input_with(src, new)
        added.append((node, new, src))
    model.recompile()

    def remove_nodes() -> None:
        for node, new, src in added:
            node.replace_input_with(new, src)
            graph.erase_node(new)
        model.recompile()

    return remove_nodes


def calibrate(model: nn.Module, data: CalibrationData, formats: dict[str, Iterable[Format]]) -> ActParams:
    """Per-tensor activation parameters for each (site, activation format), from the FP model on `data`."""
    formats = {s: list(dict.fromkeys(f)) for s, f in formats.items() if f}
    if not formats:
        return {}
    observers = {s: _Observer(max(1, SAMPLE_CAP // len(data))) for s in formats}
    remove = insert(model, observers)
    try:
        with eval_mode(model), torch.no_grad():
            for b in data:
                call_model(model, b.x)
    finally:
        remove()
    return {s: {f.name: f.calibrate(obs.sample()) for f in formats[s]}
            for s, obs in observers.items() if obs.parts}


def calibrate_choices(model: nn.Module, data: CalibrationData, sites: Iterable[Site | str],
                      choices: Iterable[Choice | str]) -> ActParams:
    """Parameters for every site × every activation format among `choices` (empty if none has one)."""
    acts = [c.act for c in map(get_choice, choices) if c.act is not None]
    return calibrate(model, data, {getattr(s, "name", s): acts for s in sites}) if acts else {}


def act_functions(model: nn.Module, assignments: dict[str, str], params: ActParams,
                  data: CalibrationData | None = None) -> dict[str, ActQuant]:
    """The fake-quant function for each site whose choice quantizes activations; parameters missing
    from `params` are calibrated on `data` when it is given."""
    kinds = _site_kinds(model)
    wanted = {s: get_choice(n).act for s, n in assignments.items()}
    wanted = {s: a for s, a in wanted.items() if a is not None and kinds.get(s) != "embedding"}
    missing = {s: [a] for s, a in wanted.items() if a.name not in params.get(s, {})}
    if missing and data is not None:
        params = {**params}
        for s, got in calibrate(model, data, missing).items():
            params[s] = {**params.get(s, {}), **got}
    out = {}
    for site, act in wanted.items():
        p = params.get(site, {}).get(act.name)
        if p is None:
            raise PlanError(f"no calibrated {act.name} activation scale for site {site!r}; make the plan "
                            "with calibration data (mpsearch.plan(model, data), from_assignments(data=...))")
        out[site] = ActQuant(act.name, p)
    return out


def _site_kinds(model: nn.Module) -> dict[str, str]:
    modules = _module_sites(model)
    if modules:
        return {_site_name(p): users[0][0] for p, users in modules.items()}
    if isinstance(model, torch.fx.GraphModule):
        return {_site_name(p): k for k, p in _graph_weight_nodes(model).values()}
    return {}


def site_record(choice: Choice, site: str, params: ActParams) -> dict:
    """What a plan stores for a site's activation: {} or {'act_format', 'act_scale', ['act_zero']}."""
    if choice.act is None or choice.act.name not in params.get(site, {}):
        return {}
    p = params[site][choice.act.name]
    zero = {"act_zero": p["zero"]} if "zero" in p else {}
    return {"act_format": choice.act.name, "act_scale": p["scale"], **zero}


def plan_params(sites: dict[str, dict]) -> ActParams:
    """The activation parameters stored in a plan's `sites` records."""
    out: ActParams = {}
    for site, rec in sites.items():
        if rec.get("act_format") is not None and rec.get("act_scale") is not None:
            p = {"scale": float(rec["act_scale"])}
            if rec.get("act_zero") is not None:
                p["zero"] = float(rec["act_zero"])
            if not math.isfinite(p["scale"]) or p["scale"] <= 0:
                raise PlanError(f"site {site!r} has activation scale {p['scale']}; regenerate the plan")
            out[site] = {rec["act_format"]: p}
    return out


def has_act_nodes(model: nn.Module) -> bool:
    return isinstance(model, torch.fx.GraphModule) and any(
        isinstance(n.target, ActQuant) for n in model.graph.nodes if n.op == "call_function")


def reexport(model: torch.fx.GraphModule, program):
    """Re-export a graph module that carries activation fake-quant nodes (they trace to aten ops), on
    the original program's example inputs; every input dim is `Dim.AUTO`, so dims the original kept
    dynamic (e.g. the batch) stay dynamic and the rest specialize."""
    args, kwargs = program.example_inputs
    auto = torch.utils._pytree.tree_map(lambda t: {i: torch.export.Dim.AUTO for i in range(t.dim())}
                                        if isinstance(t, torch.Tensor) else None, (args, kwargs))
    return torch.export.export(model, args, kwargs, dynamic_shapes=auto[0] + tuple(auto[1].values()))
