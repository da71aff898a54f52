"""Hessian-trace sensitivity (HAWQ-V2): Ω(site, f) = Tr(H_site)/n_site · ‖Q_f(W) − W‖².

Two ways to get the per-site block traces Tr(H_ll), chosen by `method`:

* ``ggn`` — the Gauss-Newton block trace Σ_x Σ_c ‖J_xᵀu_c‖² from per-sample gradient norms (one
  backward per output column; see `_curvature`). It equals the Hessian block trace exactly when the
  objective's residual vanishes (label-free KL/MSE at the FP point) or when the network is piecewise
  linear in each weight (ReLU CNNs with eval BatchNorm; checked by `_structure`). With ≤ `max_exact`
  outputs per sample it is exact (no probe noise); otherwise output-space Rademacher probes (one
  backward each, no cross-block noise), stopped when every site is under `tol`.
* ``hutchinson`` — Tr(H_ll) ≈ mean_v v_lᵀ(Hv)_l over Rademacher probes, Hessian-vector products
  forward-over-reverse with `torch.func` (double backward as fallback), `probe_batch` probes per
  vmapped call. Probing is adaptive: a site leaves the probe set once its relative standard error is
  under `tol`, which removes its cross-block noise from the sites still probed.

``auto`` (default) takes ``ggn`` whenever it is exact and supported, else ``hutchinson``. Every
trace carries its Monte-Carlo standard error (zero for exact GGN columns) into the table.

A negative trace (the loss curves down along that weight: not at a minimum, or probe noise) is not
clipped to 0 — that would make every format free there and hand the site int2. Ω uses |Tr| instead
(the curvature's magnitude: a loss change of that size in either direction) and a warning names the
sites; `site_info.trace` keeps the signed value. A site whose relative standard error stays above
`tol` after `max_probes` probes is named in a warning too.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass
from typing import Literal

import pandas as pd
import torch
from torch import nn
from tqdm.auto import tqdm

from ..data import CalibrationData, primary_output
from ..errors import UsageError
from ..formats import Choice
from ..model import Site, call_model, eval_mode
from ..static_batch import fit_batches
from ._base import Estimator, SensitivityTable, register_estimator, weight_perturbation
from ._curvature import curvature_for
from ._persample import Taps, Unsupported
from ._structure import nonlinear_ops
from .measured import micro_batches

log = logging.getLogger(__name__)




def data_loss(model: nn.Module, data: CalibrationData, objective, call=None) -> torch.Tensor:
    """The objective's sample-weighted mean over all of `data`, as one differentiable scalar.

    `call(x)` replaces the model's forward (e.g. a torch.func functional call)."""
    n = data.num_samples
    call = call or (lambda x: call_model(model, x))
    total = None
    for b in data:
        term = objective.batch(primary_output(call(b.x)), b) * (b.size / n)
        total = term if total is None else total + term
    return total


class _Welford:
    """Running mean and variance per site (vectorized over sites)."""

    def __init__(self, k: int):
        self.n = torch.zeros(k, dtype=torch.float64)
        self.mean = torch.zeros(k, dtype=torch.float64)
        self.m2 = torch.zeros(k, dtype=torch.float64)

    def add(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> None:
        """Add one observation per site (only where `mask` is true)."""
        m = torch.ones_like(self.n, dtype=torch.bool) if mask is None else mask
        self.n += m
        d = torch.where(m, x - self.mean, 0.0)
        self.mean += d / self.n.clamp_min(1)
        self.m2 += d * torch.where(m, x - self.mean, 0.0)

    @property
    def se(self) -> torch.Tensor:
        var = self.m2 / (self.n - 1).clamp_min(1)
        return torch.where(self.n >= 2, (var / self.n.clamp_min(1)).sqrt(), math.inf)

    def rel(self) -> torch.Tensor:
        return torch.where(self.se == 0, 0.0, self.se / self.mean.abs().clamp_min(1e-300))


def _bar(total: int, desc: str, progress):
    return tqdm(
        total=total, desc=desc, unit="probe", leave=False, disable=None if progress is None else not progress
    )  # None: only on a terminal


# ---- Hessian-vector products ---------------------------------------------------------------------------


def _func_hvp(model: nn.Module, names: list[str], params: list[torch.Tensor], loss_of):
    """Forward-over-reverse HVPs of `loss_of()` with torch.func, vmapped over a leading probe dim."""
    from torch.func import functional_call, grad, jvp, vmap

    primals = tuple(p.detach() for p in params)

    def loss(*ps):
        return loss_of(
            lambda x: functional_call(model, dict(zip(names, ps, strict=False)), _args(x), _kwargs(x))
        )

    g = grad(loss, argnums=tuple(range(len(primals))))

    def hvp(*vs):
        return jvp(g, primals, vs)[1]

    batched = vmap(hvp)
    return lambda vs: list(batched(*vs))


def _double_backward_hvp(params: list[torch.Tensor], loss_of, keep: bool = True):
    """Double backward over a gradient graph; probes batched with is_grads_batched. `keep`: build the graph
    once and reuse it for every call (one micro-batch); else rebuild it per call, so that several
    micro-batches' graphs are never alive together."""
    graph: list = []

    def grads():
        if graph:
            return graph[0]
        g = torch.autograd.grad(loss_of(None), params, create_graph=True)
        if keep:
            graph.append(g)
        return g

    def hvp(vs):
        gs = grads()
        try:
            return list(
                torch.autograd.grad(
                    gs, params, grad_outputs=vs, retain_graph=True, is_grads_batched=vs[0].shape[0] > 1
                )
            )
        except RuntimeError as e:  # an op without a batching rule: one probe at a time
            if "derivative for" in str(e) or _is_oom(e):
                raise
            outs = [
                torch.autograd.grad(gs, params, grad_outputs=[v[i] for v in vs], retain_graph=True)
                for i in range(vs[0].shape[0])
            ]
            return [torch.stack(t) for t in zip(*outs, strict=False)]

    if keep:
        grads()  # fail here, at construction, where an op has no derivative at all
    return hvp


def _summed(engines: list):
    """H·v of a loss that is the sum of the engines' losses (one per micro-batch): memory is one micro-batch's."""
    if len(engines) == 1:
        return engines[0]

    def hvp(vs):
        total = None
        for e in engines:
            hv = e(vs)
            total = hv if total is None else [a.add_(b) for a, b in zip(total, hv, strict=False)]
        return total

    return hvp


def _finite_difference_hvp(params: list[torch.Tensor], loss_of):
    """H·v ≈ (∇L(θ + hv) − ∇L(θ − hv)) / 2h from first-order gradients only: for ops with no second
    derivative (hardsigmoid_backward in MobileNetV3). h ≈ ε^(1/3)·(1 + ‖θ‖)/‖v‖ balances float32
    rounding against the O(h²) truncation of the central difference. `loss_of` may be a list (one loss
    per micro-batch, gradients summed)."""
    losses = loss_of if isinstance(loss_of, (list, tuple)) else [loss_of]

    def grad_at(shift):
        with torch.no_grad():
            for p, d in zip(params, shift, strict=False):
                p.add_(d)
        try:
            total = None
            for one in losses:
                g = torch.autograd.grad(one(None), params)
                total = list(g) if total is None else [a.add_(b) for a, b in zip(total, g, strict=False)]
            return total
        finally:
            with torch.no_grad():
                for p, d in zip(params, shift, strict=False):
                    p.sub_(d)

    theta = math.sqrt(sum(float(p.detach().double().pow(2).sum()) for p in params))

    def hvp(vs):
        out = []
        for i in range(vs[0].shape[0]):
            v = [t[i] for t in vs]
            norm = math.sqrt(sum(float(t.double().pow(2).sum()) for t in v)) or 1.0
            h = torch.finfo(params[0].dtype).eps ** (1 / 3) * (1 + theta) / norm
            up, down = grad_at([h * t for t in v]), grad_at([-h * t for t in v])
            out.append([(a - b) / (2 * h) for a, b in zip(up, down, strict=False)])
        return [torch.stack(t) for t in zip(*out, strict=False)]

    return hvp


def _with_first_order_fallback(engine, params, loss_of):
    """`engine`, switching to finite differences the first time an op has no double backward."""
    state = {"engine": engine}

    def hvp(vs):
        try:
            return state["engine"](vs)
        except RuntimeError as e:
            if "derivative for" not in str(e) or "not implemented" not in str(e) or "fd" in state:
                raise
            log.info("no second derivative here (%s); Hessian-vector products by finite differences",
                     str(e).splitlines()[0])
            state["engine"] = state["fd"] = _finite_difference_hvp(params, loss_of)
            return state["engine"](vs)

    return hvp


def _args(x):
    return () if isinstance(x, dict) else (tuple(x) if isinstance(x, (tuple, list)) else (x,))


def _kwargs(x):
    return x if isinstance(x, dict) else {}


def _engine(model, params, losses: list, names, hvp: str):
    """The HVP engine for the summed `losses`: torch.func where it traces (`hvp` auto/func), else double
    backward, falling back to finite differences where an op has no second derivative."""
    if hvp in ("auto", "func") and names is not None:
        try:
            engines = [_func_hvp(model, names, params, one) for one in losses]
            engines[0]([torch.zeros((1, *p.shape), dtype=p.dtype, device=p.device) for p in params])  # traces?
            log.info("hessian probes: torch.func forward-over-reverse over %d micro-batch(es)", len(losses))
            return _summed(engines)
        except Exception as e:  # noqa: BLE001 - torch.func cannot trace every model; fall back
            if hvp == "func":
                raise
            log.info("hessian probes: double backward over %d micro-batch(es) (torch.func: %s)", len(losses),
                     str(e).strip().splitlines()[0][:100] if str(e).strip() else type(e).__name__)
    keep = len(losses) == 1
    return _with_first_order_fallback(_summed([_double_backward_hvp(params, one, keep) for one in losses]),
                                      params, losses)


def _probe(gen: torch.Generator, params: list[torch.Tensor], active: torch.Tensor, k: int) -> list[torch.Tensor]:
    """k Rademacher probes per active block; converged blocks get zeros, so their cross-block noise leaves
    the sites still probed."""
    vs = []
    for p, on in zip(params, active.tolist(), strict=False):
        if on:
            v = torch.randint(0, 2, (k, *p.shape), generator=gen, dtype=torch.int8) * 2 - 1
            vs.append(v.to(p.device, p.dtype))
        else:
            vs.append(torch.zeros((k, *p.shape), dtype=p.dtype, device=p.device))
    return vs


def _is_oom(e: BaseException) -> bool:
    return isinstance(e, torch.OutOfMemoryError) or "out of memory" in str(e).lower()


def _in_passes(engine, vs: list[torch.Tensor], size: int) -> tuple[list[torch.Tensor], int]:
    """`engine(vs)` in passes of at most `size` probes, halving `size` whenever a pass runs out of device
    memory (the probes stay the same). Returns the HVPs and the size that fit."""
    k = vs[0].shape[0]
    while True:
        try:
            parts = [engine([v[i:i + size] for v in vs]) for i in range(0, k, size)]
            return ([torch.cat(t) for t in zip(*parts, strict=False)] if len(parts) > 1 else parts[0]), size
        except RuntimeError as e:
            if not _is_oom(e) or size == 1:
                raise
        # out of the except block: the failed pass's traceback (and the tensors its frames hold) is gone
        size = max(1, size // 2)
        log.info("hessian probes: out of memory; retrying with %d probes per pass", size)
        if torch.cuda.is_available():
            torch.cuda.empty_cache()


def hutchinson_traces(
    model: nn.Module,
    params: list[torch.Tensor],
    loss_fn,
    *,
    names: list[str] | None = None,
    tol: float = 0.05,
    min_probes: int = 8,
    max_probes: int = 200,
    probe_batch: int = 4,
    adaptive: bool = True,
    hvp: str = "auto",
    seed: int = 0,
    progress: bool | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per-block Hessian traces of `loss_fn(call)`: (trace, standard error, probes per block).

    `loss_fn(call)` computes the loss with `call(x)` as the model's forward (None: the model itself); a
    list of them (one per micro-batch) is summed, each HVP accumulated over them so that memory is one
    micro-batch's, whatever the number of tokens. `hvp`: "func" (forward-over-reverse, needs `names`),
    "double", or "auto" (func, else double). A batch of probes that runs out of device memory is halved
    and retried (the probes drawn are the same), down to one probe per pass.
    """
    losses = list(loss_fn) if isinstance(loss_fn, (list, tuple)) else [loss_fn]
    engine = _engine(model, params, losses, names, hvp)
    gen = torch.Generator(device="cpu").manual_seed(seed)
    stats = _Welford(len(params))
    active = torch.ones(len(params), dtype=torch.bool)
    bar = _bar(max_probes, "hessian probes", progress)
    used = 0
    try:
        while used < max_probes and bool(active.any()):
            k = min(probe_batch, max_probes - used)
            vs = _probe(gen, params, active, k)
            t0 = time.perf_counter()
            hv, probe_batch = _in_passes(engine, vs, probe_batch)
            if not used:
                log.info("hessian probes: first %d probe(s) in %.2f s, %d per pass", k, time.perf_counter() - t0,
                         probe_batch)
            vals = torch.stack(
                [(v * h).reshape(k, -1).sum(1).double().cpu() for v, h in zip(vs, hv, strict=False)], 1
            )
            del hv
            for row in vals:
                stats.add(row, active)
            used += k
            bar.update(k)
            if used >= min_probes and adaptive:
                active &= ~((stats.rel() <= tol) & (stats.n >= min_probes))
            elif used >= min_probes and bool((stats.rel() <= tol).all()):
                break
    finally:
        bar.close()
    return stats.mean, stats.se, stats.n


# ---- Gauss-Newton traces from per-sample gradient norms ----------------------------------------------


def ggn_traces(
    model: nn.Module,
    sites: list[Site],
    data: CalibrationData,
    objective,
    *,
    tol: float = 0.05,
    min_probes: int = 4,
    max_probes: int = 200,
    max_exact: int = 64,
    seed: int = 0,
    progress: bool | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per-site GGN traces: (trace, Monte-Carlo standard error, sampling standard error, probes).

    Each batch is run forward once; its exact output columns (or Rademacher output probes until the
    batch's relative standard error is under `tol`) are pulled back by one backward each.
    """
    curv_cls = curvature_for(objective)
    if curv_cls is None:
        raise Unsupported(f"no output curvature for objective {objective.name!r}")
    n = data.num_samples
    k = len(sites)
    trace = torch.zeros(k, dtype=torch.float64)
    mc_var = torch.zeros(k, dtype=torch.float64)
    per_sample: list[torch.Tensor] = []
    gen = torch.Generator(device="cpu").manual_seed(seed)
    probes = 0
    bar = _bar(len(data), "gauss-newton batches", progress)
    try:
        with Taps(model, sites) as taps, torch.enable_grad():
            for b in data:
                taps.reset(b.size)
                out = primary_output(call_model(model, b.x))
                taps.check()
                curv = curv_cls(out, b.size / n, max_exact=max_exact)
                if curv.exact_columns:
                    acc = torch.zeros(k, b.size, dtype=torch.float64)
                    for c in range(curv.exact_columns):
                        ds = taps.deltas(out, curv.column(c))
                        acc += torch.stack(
                            [t.sq_norms(d).double().cpu() for t, d in zip(taps.taps, ds, strict=False)]
                        )
                    probes = max(probes, curv.exact_columns)
                    per_sample.append(acc)
                    trace += acc.sum(1)
                else:
                    stats = _Welford(k)
                    psum = torch.zeros(k, b.size, dtype=torch.float64)
                    for r in range(max_probes):
                        ds = taps.deltas(out, curv.sample(gen))
                        vals = torch.stack(
                            [t.sq_norms(d).double().cpu() for t, d in zip(taps.taps, ds, strict=False)]
                        )
                        psum += vals
                        stats.add(vals.sum(1))
                        if r + 1 >= min_probes and bool((stats.rel() <= tol).all()):
                            break
                    probes = max(probes, int(stats.n[0]))
                    # a batch this small needs more probes than columns: later ones take the exact columns
                    max_exact = max(max_exact, int(stats.n[0]))
                    per_sample.append(psum / stats.n[0])
                    trace += stats.mean
                    mc_var += stats.se.pow(2)
                bar.update(1)
                del out
    finally:
        bar.close()
    contrib = torch.cat(per_sample, 1)  # (sites, samples): each sample's share of the trace
    data_se = contrib.std(1) * math.sqrt(contrib.shape[1]) if contrib.shape[1] > 1 else torch.zeros(k)
    return trace, mc_var.sqrt(), data_se.double(), torch.full((k,), float(probes), dtype=torch.float64)


# ---- the estimator ---------------------------------------------------------------------------------------


def ggn_is_exact(model: nn.Module, data: CalibrationData, objective) -> tuple[bool, str]:
    """Whether the GGN block traces equal the Hessian block traces here, and why (or why not)."""
    if curvature_for(objective) is None:
        return False, f"objective {objective.name!r} has no Gauss-Newton form"
    if objective.needs_reference:
        return True, f"{objective.name} to the FP outputs has zero residual at the FP weights"
    ops = nonlinear_ops(model, data.take(2).first_x)
    if ops:
        return False, "non-piecewise-linear ops: " + ", ".join(ops[:5])
    return True, "the network is piecewise linear in each weight"


class _FrozenExcept:
    """Only the given parameters require grad inside the block (and eval mode)."""

    def __init__(self, model: nn.Module, params: list[torch.Tensor]):
        self.model, self.params = model, params

    def __enter__(self):
        self.flags = {p: p.requires_grad for p in self.model.parameters()}
        self.mode = eval_mode(self.model)
        self.mode.__enter__()
        for p in self.model.parameters():
            p.requires_grad_(False)
        for p in self.params:
            p.requires_grad_(True)
        return self

    def __exit__(self, *exc):
        for p, f in self.flags.items():
            p.requires_grad_(f)
        self.mode.__exit__(*exc)


@register_estimator("hessian")
@dataclass(eq=False)
class HessianTrace(Estimator):
    """Hessian-trace Ω. `max_exact`: up to this many output columns per sample the GGN is exact (8 costs at
    most twice the minimal sampled run of 4 probes; more columns are sampled). `min_probes` is Hutchinson's.
    `probe_batch`: probes per vmapped Hutchinson call (None: 8 on a GPU, halved while a pass runs out of
    memory; 1 on CPU, where vmapped probes multiply activation memory and gain nothing). `micro_batch`:
    samples per Hutchinson pass (None: the data's own batches); each probe's HVP is summed over them, so
    memory is one micro-batch's whatever the number of tokens."""

    name = "hessian"
    method: Literal["auto", "ggn", "hutchinson"] = "auto"
    tol: float = 0.05
    min_probes: int = 8
    max_probes: int = 200
    max_samples: int = 512
    max_exact: int = 8
    probe_batch: int | None = None
    hvp: Literal["auto", "func", "double"] = "auto"
    adaptive: bool = True
    micro_batch: int | None = None

    def estimate(
        self, model, sites: list[Site], choices: list[Choice], data: CalibrationData, objective, seed: int = 0
    ) -> SensitivityTable:
        tol, max_samples, max_probes, method = self.tol, self.max_samples, self.max_probes, self.method
        if self.micro_batch is not None and int(self.micro_batch) < 1:
            raise UsageError(f"micro_batch must be a positive number of samples (got {self.micro_batch}); "
                             "omit it to use the data's own batches")
        sub = fit_batches(model, data.sample(max_samples, seed))  # a static-batch .pt2: one graph run per batch
        params = [model.get_parameter(s.param) for s in sites]
        why = ""
        t0 = time.perf_counter()
        with _FrozenExcept(model, params), _math_attention():
            used = method
            if method in ("auto", "ggn"):
                exact, why = ggn_is_exact(model, sub, objective)
                if method == "auto" and not exact:
                    used = "hutchinson"
                else:
                    try:
                        tr, se, dse, n = ggn_traces(
                            model,
                            sites,
                            sub,
                            objective,
                            tol=tol,
                            max_probes=max_probes,
                            max_exact=self.max_exact,
                            seed=seed,
                            progress=self.progress,
                        )
                        used = "ggn"
                    except Unsupported as e:
                        if method == "ggn":
                            raise UsageError(
                                f"the GGN trace is not available here ({e}); use method='hutchinson'"
                            ) from e
                        used, why = "hutchinson", str(e)
            if used == "hutchinson":
                tr, se, n = hutchinson_traces(
                    model,
                    params,
                    _micro_losses(model, sub, objective, self.micro_batch),
                    names=[s.param for s in sites],
                    tol=tol,
                    min_probes=self.min_probes,
                    max_probes=max_probes,
                    probe_batch=self.probe_batch or (8 if params[0].is_cuda else 1),
                    adaptive=self.adaptive,
                    hvp=self.hvp,
                    seed=seed,
                    progress=self.progress,
                )
                dse = torch.full_like(tr, float("nan"))
        seconds = time.perf_counter() - t0
        unmet = _tol_unmet(sites, tr, se, tol, max_probes)
        info = pd.DataFrame(
            {
                "site": [s.name for s in sites],
                "params": [s.numel for s in sites],
                "trace": tr.numpy(),
                "trace_se": se.numpy(),
                "trace_data_se": dse.numpy(),
                "probes": n.numpy(),
            }
        )
        dw = weight_perturbation(model, sites, choices).merge(info[["site", "params", "trace", "trace_se"]])
        _warn_about_traces(info)
        dw["omega"] = dw.trace.abs() / dw.params * dw.dw2  # |Tr|: see the module docstring
        dw["omega_se"] = dw.trace_se / dw.params * dw.dw2
        frame = dw[["site", "format", "omega", "omega_se"]].reset_index(drop=True)
        return SensitivityTable(
            frame,
            self.name,
            {**self.recorded_params(), "method": used, "why": why, "seed": seed, "objective": objective.name,
             "seconds": round(seconds, 4), **({"tol_unmet": unmet} if unmet else {})},
            info,
        )


def _micro_losses(model: nn.Module, data: CalibrationData, objective, micro_batch: int | None) -> list:
    """One loss per micro-batch (`micro_batch` samples; None: the data's own batches), each weighted by its
    share of the samples: their sum is the objective on all of `data`, and one HVP pass holds one
    micro-batch's graph, so memory does not grow with the number of samples or tokens."""
    if getattr(model, "_mpsearch_static_batch", None) is not None:
        micro_batch = None  # a static-batch .pt2 runs its exported batch only (`fit_batches` cut the data so)
    parts = list(micro_batches(data, micro_batch) if micro_batch else data)
    n = data.num_samples
    return [lambda call, b=b: data_loss(model, CalibrationData([b]), objective, call) * (b.size / n) for b in parts]


def _math_attention():
    """Second-order passes through `scaled_dot_product_attention` need its math kernel: the fused CPU/GPU
    kernels have no double backward (`..._flash_attention_for_cpu_backward is not implemented`)."""
    from torch.nn.attention import SDPBackend, sdpa_kernel

    return sdpa_kernel([SDPBackend.MATH])


def _warn_about_traces(info: pd.DataFrame) -> None:
    """Say which traces are negative (Ω uses |Tr|); `_tol_unmet` says which missed `tol`."""
    neg = info[info.trace < 0]
    if len(neg):
        log.warning("%d site(s) have a negative Hessian trace (%s): the loss curves down there (not at a "
                    "minimum) or the estimate is noise; their Ω uses |trace|", len(neg), ", ".join(neg.site[:5]))


def _tol_unmet(sites: list[Site], tr: torch.Tensor, se: torch.Tensor, tol: float, max_probes: int) -> list[str]:
    """Sites whose trace is less certain than `tol` when the probes ran out; said once, on stderr."""
    rel = (se / tr.abs().clamp_min(1e-300)).where(se > 0, torch.zeros_like(se))
    bad = [i for i in range(len(sites)) if float(rel[i]) > tol]
    if bad:
        worst = max(bad, key=lambda i: float(rel[i]))
        log.warning("hessian: --tol %g not reached for %d of %d sites within max_probes=%d (worst: %r at %.3g); "
                    "raise max_probes or tol, or read omega_se", tol, len(bad), len(sites), max_probes,
                    sites[worst].name, float(rel[worst]))
    return [sites[i].name for i in bad]


@register_estimator("hutchinson")
@dataclass(eq=False)
class Hutchinson(HessianTrace):
    """HAWQ-V2's estimator as named: Hutchinson probes even where the exact GGN trace would apply
    (`hessian` picks the GGN there). Same settings as `hessian`; `method` defaults to hutchinson."""

    name = "hutchinson"
    variant_of = "hessian"
    method: Literal["auto", "ggn", "hutchinson"] = "hutchinson"
