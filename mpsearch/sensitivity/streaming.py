"""``kfac``: a Fisher estimate that streams a decoder block by block, for language models of any size.

Ω(site, f) = ½ vec(ΔW)ᵀ F vec(ΔW), F the model's Fisher per token (the Hessian of the mean token KL
to the FP model at the FP weights, and the Gauss-Newton matrix of the next-token cross-entropy: one
estimate serves both, with labels and without). Labels are sampled from the model's own next-token
distribution (seeded), so the gradients are zero-mean and their squares estimate F without bias.

* A linear site's F is Kronecker-factored (K-FAC, "expand" form): F ≈ A ⊗ G with A = E[x xᵀ] over its
  input tokens and G = diag E[g²] of the gradients at its output, so Ω = ½ Σ_o G_o (ΔW A ΔWᵀ)_oo:
  two d_in × d_in / d_out accumulators per site, whatever the token count.
* Other sites (embeddings, a MoE layer's 3-D experts weights) use the diagonal Fisher from the
  micro-batch gradients: Ω = ½ Σ F_ii ΔW_i².

Streaming (Hugging Face decoders): the inputs of the first decoder block are recorded from the model
(the embeddings, position embeddings and masks it computes); then each block in turn is moved to
`device`, run on every micro-batch (its boundary activations kept on `store`), and moved back. The
head samples labels and returns the output gradient; the blocks are then revisited in reverse, each
recomputed with gradients, accumulating its sites' statistics. Peak device memory is one block's
weights, the embeddings and head, one micro-batch's activations and one block's accumulators. Only
first derivatives are taken, so every attention kernel (SDPA included) works.

Ω's standard error is half the difference of the estimates from the even and the odd micro-batches.
"""

from __future__ import annotations

import math
from contextlib import ExitStack
from dataclasses import dataclass

import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn

from ..data import CalibrationData, _slice, _to
from ..errors import UsageError
from ..formats import Choice
from ..model import Site, batch_size_of
from ..rounding import rounded
from ._base import Estimator, SensitivityTable, register_estimator


class _Call:
    """The arguments a block is called with besides its hidden states (masks, position embeddings)."""

    def __init__(self, args: tuple, kwargs: dict):
        self.args, self.kwargs = args, kwargs

    def __call__(self, layer: nn.Module, hidden: torch.Tensor):
        return layer(hidden, *self.args, **self.kwargs)


class _Caught(Exception):
    """Raised by the hook that records the first block's inputs, to stop the forward there."""


def _first(out):
    return out[0] if isinstance(out, (tuple, list)) else out


def _head(model: nn.Module) -> tuple[nn.Module, nn.Module]:
    """(final norm, LM head) of a Hugging Face decoder."""
    head = model.get_output_embeddings()
    base = model.base_model
    for name in ("norm", "ln_f", "final_layernorm", "final_layer_norm"):
        norm = getattr(base, name, None)
        if isinstance(norm, nn.Module):
            return norm, head
    raise UsageError(f"cannot find the final norm of {type(model).__name__}; use estimator 'fisher' for this model")


class _Linear:
    """K-FAC statistics of one linear use of a site: input second moment and output gradient squares,
    kept separately for even and odd micro-batches (for the error bar)."""

    def __init__(self, module: nn.Module, transposed: bool):
        self.module, self.transposed = module, transposed
        self.A = [None, None]
        self.G = [None, None]
        self.n = [0, 0]
        self.half = 0
        self.handles = []

    def attach(self) -> None:
        def fwd(mod, inp, out):
            x = inp[0].detach().reshape(-1, inp[0].shape[-1]).float()
            h = self.half
            a = x.T @ x
            self.A[h] = a if self.A[h] is None else self.A[h] + a
            self.n[h] += x.shape[0]
            if out.requires_grad:
                def bwd(g, h=h):
                    s = g.detach().reshape(-1, g.shape[-1]).float().pow(2).sum(0)
                    self.G[h] = s if self.G[h] is None else self.G[h] + s
                out.register_hook(bwd)

        self.handles.append(self.module.register_forward_hook(fwd))

    def detach(self) -> None:
        for h in self.handles:
            h.remove()
        self.handles = []

    def omega(self, dw: torch.Tensor) -> tuple[float, float]:
        """(Ω, se) for weight perturbation `dw` (in the module's own layout)."""
        d = dw.float().reshape(dw.shape[0], -1)
        if self.transposed:
            d = d.T
        r = [None if a is None else ((d @ a) * d).sum(1) for a in self.A]
        halves = [0.5 * float((g * ri).sum()) / n ** 2 for g, ri, n in zip(self.G, r, self.n) if g is not None]
        gs = sum(g for g in self.G if g is not None)
        rs = sum(ri for ri in r if ri is not None)
        full = 0.5 * float((gs * rs).sum()) / sum(self.n) ** 2
        return full, (abs(halves[0] - halves[1]) / 2 if len(halves) == 2 else abs(full))


class _Diagonal:
    """Diagonal Fisher of one parameter from micro-batch gradients (even/odd halves)."""

    def __init__(self, param: nn.Parameter):
        self.param = param
        self.F = [None, None]

    def add(self, grad: torch.Tensor, half: int) -> None:
        g2 = grad.detach().float().pow(2)
        self.F[half] = g2 if self.F[half] is None else self.F[half] + g2

    def omega(self, dw: torch.Tensor, n_tokens: list[int]) -> tuple[float, float]:
        d2 = dw.float().pow(2)
        halves = [0.5 * float((f * d2).sum()) / n for f, n in zip(self.F, n_tokens) if f is not None and n]
        fs = sum(f for f in self.F if f is not None)
        full = 0.5 * float((fs * d2).sum()) / max(sum(n_tokens), 1)
        return full, (abs(halves[0] - halves[1]) / 2 if len(halves) == 2 else abs(full))


@register_estimator("kfac")
@dataclass(eq=False)
class StreamingKFAC(Estimator):
    """Block-streamed sampled Fisher (K-FAC for linear sites, diagonal otherwise); see the module docstring.

    Settings: `micro_batch` (sequences per pass, default 4), `device` (where blocks run: default the
    model's device), `store` (where boundary activations wait: `cpu` or `device`, default `cpu` when
    `device` differs from the model's, else `device`).
    """

    name = "kfac"
    micro_batch: int = 4
    device: str | None = None
    store: str | None = None

    def estimate(self, model, sites: list[Site], choices: list[Choice], data: CalibrationData, objective,
                 seed: int = 0) -> SensitivityTable:
        """Forward through the blocks, the head, the blocks in reverse, then the embeddings. Long because
        the passes share one try/finally that puts every weight back where it was and restores
        `requires_grad`, whatever fails in between."""
        from ..hf import decoder_layers

        if any(c.act is not None for c in choices):
            raise UsageError("estimator 'kfac' scores weight formats only; drop the WEIGHT:ACT choices or use 'fisher'")
        home = next(model.parameters()).device
        device = torch.device(self.device or home)
        store = self.store or ("cpu" if device != home else "device")
        store = device if store == "device" else torch.device(store)
        mb = int(self.micro_batch)
        if mb < 1:
            raise UsageError(f"micro_batch must be positive (got {mb})")
        layers = decoder_layers(model)
        norm, head = _head(model)
        gen = torch.Generator(device=device).manual_seed(seed)
        micro = [_to(_slice(b.x, i, i + mb), device) for b in data for i in range(0, b.size, mb)]
        progress = bool(self.progress)

        params = dict(model.named_parameters())
        site_of = {id(params[s.param]): s for s in sites}
        linear: dict[str, list[_Linear]] = {}
        for _, mod in model.named_modules():
            w = getattr(mod, "weight", None)
            if isinstance(w, torch.Tensor) and id(w) in site_of and (
                    isinstance(mod, nn.Linear) or type(mod).__name__ == "Conv1D"):
                linear.setdefault(site_of[id(w)].name, []).append(_Linear(mod, type(mod).__name__ == "Conv1D"))
        diagonal = {s.name: _Diagonal(params[s.param]) for s in sites
                    if s.name not in linear or s.kind in ("embedding", "experts")}
        in_layer = [{s.name for s in sites if any(p is params[s.param] for p in layer.parameters())}
                    for layer in layers]
        tokens = [0, 0]
        rows: list[dict] = []

        requires = {n: p.requires_grad for n, p in params.items()}
        for p in params.values():
            p.requires_grad_(False)
        try:
            _place(model, layers, device)  # everything but the blocks; the blocks visit one at a time
            h, kw = self._capture(model, layers, micro)
            for i, n in enumerate(micro):
                tokens[i % 2] += int(math.prod(n["input_ids"].shape) if isinstance(n, dict) and "input_ids" in n
                                     else batch_size_of(n))
            acts = [[_to(t, store) for t in h]]
            bar = _bar(progress, 2 * len(layers) + 2, "kfac blocks")
            with torch.no_grad():
                for layer in layers:
                    layer.to(device)
                    acts.append([_to(_first(k(layer, _to(x, device))), store) for x, k in zip(acts[-1], kw)])
                    layer.to(home)
                    bar.update(1)
            grads = self._head(norm, head, acts.pop(), linear, sites, gen, device, store)
            self._score(model, [s for s in sites if s.name in linear and _only_in(s, head, params)], choices,
                        linear, diagonal, tokens, rows)
            bar.update(1)
            for i in reversed(range(len(layers))):
                layer = layers[i].to(device)
                names = in_layer[i]
                stats = [st for s in names for st in linear.get(s, [])]
                diag = [diagonal[s] for s in names if s in diagonal]
                for p in (d.param for d in diag):
                    p.requires_grad_(True)
                with ExitStack() as stack:
                    for st in stats:
                        st.attach()
                        stack.callback(st.detach)
                    xs = acts.pop()
                    for j, (x, k) in enumerate(zip(xs, kw)):
                        for st in stats:
                            st.half = j % 2
                        x = _to(x, device).requires_grad_(True)
                        out = _first(k(layer, x))
                        got = torch.autograd.grad(out, [x] + [d.param for d in diag], _to(grads[j], device),
                                                  allow_unused=True)
                        grads[j] = _to(got[0], store)
                        for d, g in zip(diag, got[1:]):
                            if g is not None:
                                d.add(g, j % 2)
                for p in (d.param for d in diag):
                    p.requires_grad_(False)
                self._score(model, [s for s in sites if s.name in names], choices, linear, diagonal, tokens, rows)
                layer.to(home)
                bar.update(1)
            self._embeddings(model, layers, micro, grads, diagonal, sites, in_layer)
            done = {r["site"] for r in rows}
            self._score(model, [s for s in sites if s.name not in done], choices, linear, diagonal, tokens, rows)
            bar.update(1)
            bar.close()
        finally:
            for n, p in params.items():
                p.requires_grad_(requires[n])
            _place(model, layers, home)
            layers.to(home)
        frame = pd.DataFrame(rows)
        order = {s.name: i for i, s in enumerate(sites)}
        frame = frame.sort_values("site", key=lambda c: c.map(order), kind="stable").reset_index(drop=True)
        return SensitivityTable(frame, self.name, self.recorded_params())

    @staticmethod
    def _capture(model, layers, micro, grad: bool = False):
        """Each micro-batch's input to the first block (hidden states, other keyword arguments)."""
        got = {}

        def hook(mod, args, kwargs):
            got["h"] = args[0] if args else kwargs["hidden_states"]
            got["kw"] = _Call(tuple(args[1:]), {k: v for k, v in kwargs.items() if k != "hidden_states"})
            raise _Caught

        hs, kws = [], []
        handle = layers[0].register_forward_pre_hook(hook, with_kwargs=True)
        try:
            for x in micro:
                with torch.set_grad_enabled(grad):
                    try:
                        model(**x) if isinstance(x, dict) else model(x)
                    except _Caught:
                        pass
                hs.append(got["h"] if grad else got["h"].detach())
                kws.append(got["kw"])
        finally:
            handle.remove()
        return hs, kws

    @staticmethod
    def _head(norm, head, hidden, linear, sites, gen, device, store):
        """Sample next tokens from the model, and return d(Σ token losses)/d(last hidden state) per micro-batch."""
        stats = [st for st_list in linear.values() for st in st_list if st.module is head]
        grads = []
        with ExitStack() as stack:
            for st in stats:
                st.attach()
                stack.callback(st.detach)
            for j, hl in enumerate(hidden):
                for st in stats:
                    st.half = j % 2
                x = _to(hl, device).requires_grad_(True)
                logits = head(norm(x)).float()
                flat = logits.reshape(-1, logits.shape[-1])
                with torch.no_grad():
                    y = torch.multinomial(flat.softmax(-1), 1, generator=gen).reshape(-1)
                loss = F.cross_entropy(flat, y, reduction="sum")
                grads.append(_to(torch.autograd.grad(loss, x)[0], store))
        return grads

    def _embeddings(self, model, layers, micro, grads, diagonal, sites, in_layer):
        """Diagonal Fisher of the sites before the first block (token and position embeddings)."""
        inside = set().union(*in_layer)
        pre = [diagonal[s.name] for s in sites if s.name in diagonal and s.name not in inside]
        if not pre:
            return
        for d in pre:
            d.param.requires_grad_(True)
        try:
            for j, x in enumerate(micro):
                (h0,), _ = self._capture(model, layers, [x], grad=True)
                if not h0.requires_grad:
                    continue
                got = torch.autograd.grad(h0, [d.param for d in pre], _to(grads[j], h0.device), allow_unused=True)
                for d, g in zip(pre, got):
                    if g is not None:
                        d.add(g, j % 2)
        finally:
            for d in pre:
                d.param.requires_grad_(False)

    @staticmethod
    def _score(model, todo: list[Site], choices, linear, diagonal, tokens, rows) -> None:
        """Ω rows for `todo` (statistics complete), then free their accumulators."""
        for s in todo:
            p = model.get_parameter(s.param)
            w = p.detach()
            for c in choices:
                dw = (rounded(p, c.weight) - w).float()  # the active rounding (GPTQ/AWQ): Ω for what ships
                om, se = 0.0, 0.0
                for st in linear.get(s.name, []):
                    if st.n[0] or st.n[1]:
                        o, e = st.omega(dw)
                        om, se = om + o, math.hypot(se, e)
                if s.name in diagonal and diagonal[s.name].F[0] is not None:
                    o, e = diagonal[s.name].omega(dw, tokens)
                    om, se = om + o, math.hypot(se, e)
                rows.append({"site": s.name, "format": c.name, "omega": om, "omega_se": se})
            for st in linear.get(s.name, []):
                st.A, st.G = [None, None], [None, None]
            if s.name in diagonal:
                diagonal[s.name].F = [None, None]


def _only_in(site: Site, module: nn.Module, params: dict) -> bool:
    """Whether `site`'s weight belongs to `module` and to no decoder block (the LM head, unless tied)."""
    return any(p is params[site.param] for p in module.parameters()) and not site.kind == "embedding"


def _place(model: nn.Module, layers: nn.Module, device) -> None:
    """Move every parameter and buffer outside `layers` to `device` (the blocks stay where they are)."""
    inside = {id(m) for m in layers.modules()}
    for mod in model.modules():
        if id(mod) in inside:
            continue
        for p in mod._parameters.values():
            if p is not None and p.device != torch.device(device):
                p.data = p.data.to(device)
        for name, b in mod._buffers.items():
            if b is not None:
                mod._buffers[name] = b.to(device)


def _bar(progress: bool, total: int, desc: str):
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, disable=not progress, leave=False)
