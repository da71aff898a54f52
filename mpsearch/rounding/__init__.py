"""How a weight is rounded onto its format's grid, the same way at plan time and at apply/export time.

- `auto` (the default of `plan` and `mpsearch plan`): `gptq` for a model whose quantized sites are
  all Linear layers with at least `formats.LINEAR_MIN_K` inputs (a transformer; calibration data is
  always there when planning) and whose GPTQ statistics fit `GPTQ_AUTO_MAX_BYTES`, else `rtn`
  (`resolve_auto`). GPTQ holds every site's float64 input Hessian (Σ K² · 8 bytes: 10 GB for a 1.1B
  Llama, 79 GB for an 8B one) and rounds every candidate format of every site column by column, so
  beyond that size `auto` stays at round-to-nearest and says so; `rounding="gptq"` forces it. The plan
  records the rounding it resolved to (`provenance.rounding`) and why (`provenance.rounding_from`);
  `apply`/`export` of a `gptq` plan take `data=`.
- `rtn`: round to nearest (`Format.quantize`).
- `gptq`: Hessian-based error feedback (`rounding.gptq`; a new plan's settings: `GPTQ_SETTINGS`,
  act-order with static groups and damp 0.1), with H = XᵀX of each site's calibration
  inputs on the 16-bit model (all sites from one pass, so a site's rounding does not depend on which
  other sites are quantized: the sensitivity of one site, the plan and the shipped model agree).
  Applies to Linear and Conv1d/Conv2d sites (groups = 1) whose format has a fixed-grid form
  (`grid_params`: the `int` family, symmetric, full-range, asymmetric, any granularity and clip; OCP MX;
  NVFP4); other sites and formats are rounded to nearest, and the plan says which (`provenance.rounding`).
- `awq`: activation-aware per-input-channel scaling (`rounding.awq`), s = mean|x|^α with α searched
  per site for the least layer-output error on the calibration inputs, for any weight format, on
  Linear sites (other sites round to nearest). s ships as one FP16 vector per input channel
  (`awq_in`, 16 bits per input column, in the exported bytes; the plan's budget does not count it).
- `awq+gptq`: the same scales, with the scaled weight rounded by GPTQ (fixed-grid formats; others RTN).

While a `Rounding` is active for a model (`with rounding.active(model):`), `rounded(param, fmt, layout)` and
`encoded(param, fmt, layout)` give that rounding (`layout`: the site's `WeightLayout`; MoE experts, the
`experts` layout, have no input Hessian and are always rounded to nearest); `apply`, `export`, the guard
and the estimators call them, so Ω is estimated for the weights that ship. The rounded weights are
cached per (site, format).
"""

from __future__ import annotations

import contextvars
from contextlib import contextmanager

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import UsageError
from ..formats import ROWS, Encoded, Format, WeightLayout

ROUNDINGS = ("rtn", "gptq", "awq", "awq+gptq")
AUTO = "auto"
# The settings a new plan's GPTQ runs with (recorded in `provenance.rounding_settings`; a plan without
# them is re-derived with `gptq_encode`'s own defaults, damp 0.01 in plain column order, as it was made):
# act-order with static groups and damp 0.1. Uniform int4_fr_g128_mse, held-out: MiniLM-L6 cosine
# 0.9836 -> 0.9851, tiny decoder (first 64 held-out windows) perplexity 5.877 -> 5.865 / p99.9 token KL 0.038 -> 0.024
# (benchmarks/peers.py data; damp 0.01 with act-order 0.9853 on MiniLM).
GPTQ_SETTINGS = {"damp": 0.1, "act_order": True}
# `auto` picks gptq only while its input Hessians (float64, K x K per site) take at most this much:
# MiniLM-L6 0.15 GB and GPT-2 small 1.5 GB fit; TinyLlama-1.1B (10.0 GB) and Llama-3-8B (78.5 GB) do not
GPTQ_AUTO_MAX_BYTES = 2 * 2**30


def default_settings(name: str) -> dict:
    """The rounding settings a new plan records for rounding `name` (GPTQ's: `GPTQ_SETTINGS`)."""
    return dict(GPTQ_SETTINGS) if name in ("gptq", "awq+gptq") else {}
_ACTIVE: contextvars.ContextVar[Rounding | None] = contextvars.ContextVar("mpsearch_rounding", default=None)


def check_name(name: str | None, allow_auto: bool = False) -> str:
    name = (name or "rtn").lower()
    if name not in ROUNDINGS and not (allow_auto and name == AUTO):
        raise UsageError(f"unknown rounding {name!r}; use one of {', '.join((AUTO,) + ROUNDINGS)}")
    return name


def linear_model(site_list) -> bool:
    """Whether every quantized (non-embedding) site is a Linear layer with at least LINEAR_MIN_K inputs:
    a transformer's projections, where group-wise INT with GPTQ is the default (`LINEAR_DEFAULT_FORMATS`)."""
    from ..formats import LINEAR_MIN_K

    weights = [s for s in site_list if s.kind != "embedding"]
    return bool(weights) and all(s.kind == "linear" and len(s.shape) == 2 and s.shape[-1] >= LINEAR_MIN_K
                                 for s in weights)


def hessian_bytes(site_list) -> int:
    """What GPTQ's statistics take: one float64 K x K input Hessian per quantized Linear site."""
    return sum(8 * s.shape[-1] ** 2 for s in site_list if s.kind == "linear")


def resolve_auto(name: str | None, site_list) -> tuple[str, str]:
    """(rounding, why) for a plan's `rounding` setting; `auto` picks gptq for a Linear-layer model."""
    name = check_name(name, allow_auto=True)
    if name != AUTO:
        return name, "given"
    from ..formats import LINEAR_MIN_K

    if linear_model(site_list):
        need = hessian_bytes(site_list)
        if need > GPTQ_AUTO_MAX_BYTES:
            return "rtn", (f"auto: rtn (GPTQ's input Hessians would take {need / 1e9:.1f} GB, over the "
                           f"{GPTQ_AUTO_MAX_BYTES / 2**30:g} GiB that auto allows; rounding='gptq' forces it)")
        return "gptq", "auto: gptq (every quantized site is a Linear layer; calibration data given)"
    return "rtn", f"auto: rtn (not every quantized site is a Linear layer with >= {LINEAR_MIN_K} inputs)"


def _hessian_modules(model: nn.Module) -> dict[str, nn.Module]:
    """param FQN -> its module, for the weights GPTQ can take (one Linear/Conv1d/Conv2d user, groups = 1)."""
    from ..model import _module_sites

    out = {}
    for pname, users in _module_sites(model).items():
        if len(users) != 1:
            continue
        mod = users[0][1]
        if isinstance(mod, nn.Linear) or (isinstance(mod, (nn.Conv1d, nn.Conv2d)) and mod.groups == 1
                                          and mod.padding_mode == "zeros" and not isinstance(mod.padding, str)):
            out[pname] = mod
    return out


def _input_rows(mod: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The layer's input as rows matching the weight's columns (a conv's unfolded patches)."""
    if isinstance(mod, nn.Linear):
        return x.reshape(-1, x.shape[-1])
    if isinstance(mod, nn.Conv1d):
        x = x.unsqueeze(-2)
        kernel, dil, pad, stride = (1, *mod.kernel_size), (1, *mod.dilation), (0, *mod.padding), (1, *mod.stride)
    else:
        kernel, dil, pad, stride = mod.kernel_size, mod.dilation, mod.padding, mod.stride
    cols = F.unfold(x, kernel, dilation=dil, padding=pad, stride=stride)  # (N, C·kh·kw, L)
    return cols.transpose(1, 2).reshape(-1, cols.shape[1])


def input_statistics(model: nn.Module, data) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """param FQN -> (H = 2XᵀX/n in float64, mean |x| per input column) over every calibration input of
    its module, 16-bit model (GPTQ needs H; AWQ needs both)."""
    from ..data import as_data
    from ..model import call_model

    mods = _hessian_modules(model)
    acc: dict[str, list] = {p: [None, 0, None] for p in mods}

    def hook(pname):
        def fn(mod, inputs, output):
            rows = _input_rows(mod, inputs[0].detach()).float()
            a = acc[pname]
            xtx = (rows.T @ rows).double()  # float32 products, float64 sum over batches
            ab = rows.abs().double().sum(0)
            a[0] = xtx if a[0] is None else a[0] + xtx
            a[2] = ab if a[2] is None else a[2] + ab
            a[1] += rows.shape[0]
        return fn

    handles = [m.register_forward_hook(hook(p)) for p, m in mods.items()]
    try:
        with torch.no_grad():
            for b in as_data(data):
                call_model(model, b.x)
    finally:
        for h in handles:
            h.remove()
    done = {p: a for p, a in acc.items() if a[0] is not None}
    return {p: 2 * a[0] / a[1] for p, a in done.items()}, {p: a[2] / a[1] for p, a in done.items()}


def input_hessians(model: nn.Module, data) -> dict[str, torch.Tensor]:
    """param FQN -> H = 2XᵀX/n (float64) over every calibration input of its module, 16-bit model."""
    return input_statistics(model, data)[0]


class Rounding:
    """One model's rounding: its name, the statistics it needs, and the rounded weights so far."""

    def __init__(self, name: str, model: nn.Module, data=None, **settings):
        self.name = check_name(name)
        self.settings = settings
        self._params = {id(p): n for n, p in model.named_parameters()}
        self._cache: dict[tuple[str, str], Encoded] = {}
        self._factors: dict[str, tuple] = {}
        self.hessians: dict[str, torch.Tensor] = {}
        self.abs_means: dict[str, torch.Tensor] = {}
        self.linear: set[str] = set()  # AWQ's sites: a Linear's input channel is one column of W
        if self.name != "rtn":
            if data is None:
                raise UsageError(f"{self.name} rounding needs calibration data; pass data= (CLI: --data or --example)")
            self.hessians, self.abs_means = input_statistics(model, data)
            self.linear = {p for p, m in _hessian_modules(model).items() if isinstance(m, nn.Linear)}

    def applies(self, pname: str | None, fmt: Format, layout: WeightLayout = ROWS) -> bool:
        if layout != ROWS:  # the statistics are of Linear/Conv inputs: a MoE experts weight rounds to nearest
            return False
        if self.name == "gptq":
            return pname in self.hessians and hasattr(fmt, "grid_params")
        return self.name != "rtn" and pname in self.hessians and pname in self.linear

    def _gptq(self, pname: str, fmt: Format, weight: torch.Tensor, h: torch.Tensor | None = None) -> Encoded:
        from .gptq import DAMP, gptq_encode, gptq_factor

        kw = {k: v for k, v in self.settings.items() if k in ("damp", "block", "dtype", "act_order")}
        if h is not None:  # AWQ's scaled weight: its own Hessian, no shared factor
            return gptq_encode(fmt, weight, h, **kw)
        if pname not in self._factors:  # one factorization per site (in act-order's order), shared by its formats
            self._factors[pname] = gptq_factor(self.hessians[pname], kw.get("damp", DAMP), kw.get("act_order", False))
        return gptq_encode(fmt, weight, self.hessians[pname], **kw, factor=self._factors[pname])

    def _encode(self, pname: str, fmt: Format, weight: torch.Tensor) -> Encoded:
        if self.name == "gptq":
            return self._gptq(pname, fmt, weight)
        from .awq import GRID, awq_encode

        inner = None
        if self.name == "awq+gptq" and hasattr(fmt, "grid_params"):
            def inner(f, w, h):
                return self._gptq(pname, f, w, h)
        return awq_encode(fmt, weight, self.hessians[pname], self.abs_means[pname],
                          grid=self.settings.get("grid", GRID), inner=inner)

    def encoded(self, param: torch.Tensor, fmt: Format, layout: WeightLayout = ROWS) -> Encoded:
        pname = self._params.get(id(param))
        if not self.applies(pname, fmt, layout):
            return layout.encode(fmt, param.detach())
        key = (pname, fmt.name)
        if key not in self._cache:  # computed where the statistics are (the model's device), kept on the host
            enc = self._encode(pname, fmt, param.detach().to(self.hessians[pname].device))
            self._cache[key] = _on_host(enc)
        return self._cache[key]

    def rounded(self, param: torch.Tensor, fmt: Format, layout: WeightLayout = ROWS) -> torch.Tensor:
        pname = self._params.get(id(param))
        if not self.applies(pname, fmt, layout):
            return layout.quantize(fmt, param.detach())
        from .awq import decode

        enc = self.encoded(param, fmt)
        return decode(fmt, enc, tuple(param.shape)).to(device=param.device, dtype=param.dtype)

    @contextmanager
    def active(self):
        token = _ACTIVE.set(self)
        try:
            yield self
        finally:
            _ACTIVE.reset(token)


def _on_host(enc: Encoded) -> Encoded:
    """`enc` with its tensors in host memory (the cache holds every site x format: not on the GPU)."""
    return Encoded(enc.codes.cpu(), enc.code_bits, {k: v.cpu() for k, v in enc.scales.items()},
                   None if enc.zeros is None else enc.zeros.cpu())


def current() -> Rounding | None:
    return _ACTIVE.get()


def current_name() -> str:
    r = _ACTIVE.get()
    return "rtn" if r is None else r.name


def rounding_key() -> str:
    """What a cached result computed under the active rounding depends on."""
    r = _ACTIVE.get()
    return "rtn" if r is None or r.name == "rtn" else f"{r.name}:{sorted(r.settings.items())}"


def rounded(param: torch.Tensor, fmt: Format, layout: WeightLayout = ROWS) -> torch.Tensor:
    """`param` (a model parameter, laid out as `layout`: its site's `Site.layout`) simulated-quantized to
    `fmt` with the active rounding."""
    r = _ACTIVE.get()
    return layout.quantize(fmt, param.detach()) if r is None else r.rounded(param, fmt, layout)


def encoded(param: torch.Tensor, fmt: Format, layout: WeightLayout = ROWS) -> Encoded:
    """The stored form of `param` (laid out as `layout`) in `fmt`, with the active rounding."""
    r = _ACTIVE.get()
    return layout.encode(fmt, param.detach()) if r is None else r.encoded(param, fmt, layout)


@contextmanager
def rounding_for(model: nn.Module, name: str | None, data=None, **settings):
    """Activate `name` rounding for `model` (statistics from `data`, on the model as it is now)."""
    name = check_name(name)
    if name == "rtn" and _ACTIVE.get() is None:
        yield None
        return
    with Rounding(name, model, data, **settings).active() as r:
        yield r


def state(r: Rounding | None, pnames=None) -> dict | None:
    """What another process needs to round the sites `pnames` (all: None) exactly as `r` does — its name,
    settings and calibration statistics — so that a rank of `--devices` scores the rounding that ships.
    None for round-to-nearest."""
    if r is None or r.name == "rtn":
        return None
    keep = (lambda d: dict(d)) if pnames is None else (lambda d: {k: v for k, v in d.items() if k in pnames})
    return {"name": r.name, "settings": dict(r.settings), "hessians": keep(r.hessians),
            "abs_means": keep(r.abs_means), "linear": sorted(r.linear if pnames is None else r.linear & set(pnames))}


def from_state(model: nn.Module, st: dict) -> Rounding:
    """`state`'s rounding for this process's copy of the model (its parameters; no calibration pass)."""
    r = Rounding("rtn", model, **st["settings"])
    r.name, r.hessians, r.abs_means, r.linear = st["name"], st["hessians"], st["abs_means"], set(st["linear"])
    return r
