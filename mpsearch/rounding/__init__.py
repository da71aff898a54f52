"""How a weight is rounded onto its format's grid, the same way at plan time and at apply/export time.

- `rtn` (default): round to nearest (`Format.quantize`).
- `gptq`: Hessian-based error feedback (`rounding.gptq`), with H = XᵀX of each site's calibration
  inputs on the 16-bit model (all sites from one pass, so a site's rounding does not depend on which
  other sites are quantized: the sensitivity of one site, the plan and the shipped model agree).
  Applies to Linear and Conv1d/Conv2d sites (groups = 1) whose format has a fixed-grid form (the
  `int` family: symmetric, full-range, asymmetric; any granularity and clip); other sites and
  formats are rounded to nearest, and the plan says which (`provenance.rounding`).

While a `Rounding` is active for a model (`with rounding.active(model):`), `rounded(param, fmt)` and
`encoded(param, fmt)` give that rounding; `apply`, `export`, the guard and the estimators call them,
so Ω is estimated for the weights that ship. The rounded weights are cached per (site, format).
"""

from __future__ import annotations

import contextvars
from contextlib import contextmanager

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import UsageError
from ..formats import Encoded, Format

ROUNDINGS = ("rtn", "gptq")
_ACTIVE: contextvars.ContextVar[Rounding | None] = contextvars.ContextVar("mpsearch_rounding", default=None)


def check_name(name: str | None) -> str:
    name = (name or "rtn").lower()
    if name not in ROUNDINGS:
        raise UsageError(f"unknown rounding {name!r}; use one of {', '.join(ROUNDINGS)}")
    return name


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


def input_hessians(model: nn.Module, data) -> dict[str, torch.Tensor]:
    """param FQN -> H = 2XᵀX/n (float64) over every calibration input of its module, 16-bit model."""
    from ..data import as_data
    from ..model import call_model

    mods = _hessian_modules(model)
    acc: dict[str, list] = {p: [None, 0] for p in mods}

    def hook(pname):
        def fn(mod, inputs, output):
            rows = _input_rows(mod, inputs[0].detach()).float()
            a = acc[pname]
            xtx = (rows.T @ rows).double()  # float32 products, float64 sum over batches
            a[0] = xtx if a[0] is None else a[0] + xtx
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
    return {p: 2 * a[0] / a[1] for p, a in acc.items() if a[0] is not None}


class Rounding:
    """One model's rounding: its name, the statistics it needs, and the rounded weights so far."""

    def __init__(self, name: str, model: nn.Module, data=None, **settings):
        self.name = check_name(name)
        self.settings = settings
        self._params = {id(p): n for n, p in model.named_parameters()}
        self._cache: dict[tuple[str, str], Encoded] = {}
        self._factors: dict[str, tuple] = {}
        self.hessians: dict[str, torch.Tensor] = {}
        if self.name == "gptq":
            if data is None:
                raise UsageError("gptq rounding needs calibration data; pass data= (CLI: --data or --example)")
            self.hessians = input_hessians(model, data)

    def applies(self, pname: str | None, fmt: Format) -> bool:
        return self.name == "gptq" and pname in self.hessians and hasattr(fmt, "grid_params")

    def encoded(self, param: torch.Tensor, fmt: Format) -> Encoded:
        pname = self._params.get(id(param))
        if not self.applies(pname, fmt):
            return fmt.encode(param.detach())
        key = (pname, fmt.name)
        if key not in self._cache:
            from .gptq import DAMP, gptq_encode, inverse_hessian_factor

            if pname not in self._factors:  # one factorization per site, shared by its formats
                self._factors[pname] = inverse_hessian_factor(self.hessians[pname],
                                                              self.settings.get("damp", DAMP))
            self._cache[key] = gptq_encode(fmt, param.detach().cpu(), self.hessians[pname], **self.settings,
                                           factor=self._factors[pname])
        return self._cache[key]

    def rounded(self, param: torch.Tensor, fmt: Format) -> torch.Tensor:
        pname = self._params.get(id(param))
        if not self.applies(pname, fmt):
            return fmt.quantize(param.detach())
        enc = self.encoded(param, fmt)
        return fmt.decode(enc, tuple(param.shape)).to(device=param.device, dtype=param.dtype)

    @contextmanager
    def active(self):
        token = _ACTIVE.set(self)
        try:
            yield self
        finally:
            _ACTIVE.reset(token)


def current() -> Rounding | None:
    return _ACTIVE.get()


def current_name() -> str:
    r = _ACTIVE.get()
    return "rtn" if r is None else r.name


def rounding_key() -> str:
    """What a cached result computed under the active rounding depends on."""
    r = _ACTIVE.get()
    return "rtn" if r is None or r.name == "rtn" else f"{r.name}:{sorted(r.settings.items())}"


def rounded(param: torch.Tensor, fmt: Format) -> torch.Tensor:
    """`param` (a model parameter) simulated-quantized to `fmt` with the active rounding."""
    r = _ACTIVE.get()
    return fmt.quantize(param.detach()) if r is None else r.rounded(param, fmt)


def encoded(param: torch.Tensor, fmt: Format) -> Encoded:
    r = _ACTIVE.get()
    return fmt.encode(param.detach()) if r is None else r.encoded(param, fmt)


@contextmanager
def rounding_for(model: nn.Module, name: str | None, data=None, **settings):
    """Activate `name` rounding for `model` (statistics from `data`, on the model as it is now)."""
    name = check_name(name)
    if name == "rtn" and _ACTIVE.get() is None:
        yield None
        return
    with Rounding(name, model, data, **settings).active() as r:
        yield r
