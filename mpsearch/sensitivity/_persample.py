"""Per-sample weight gradients of every site from one forward and a few backward passes.

A site's weight gradient for sample x is G_x = Σ_t δ_t a_tᵀ (δ: gradient at the module's output,
a: its input patch at position t). Hooks record a and the output during one forward; each backward
asks autograd only for δ at the site outputs (no parameter gradients are formed), and the
per-sample quantities are built from (a, δ) directly — the ghost-norm / unfold trick that Opacus and
BackPACK use. That is what makes the Gauss-Newton trace, the empirical Fisher and the first-order
Taylor score cost a handful of backward passes instead of one pass per sample.

Supported: Linear, Conv1d/Conv2d (zero padding) and Embedding modules whose weight is used by that
one module, once per forward — or, in an exported (`.pt2`) graph, the same aten ops (and `addmm` with an
(in, out) weight, Hugging Face's Conv1D), tapped by a node inserted after each site's op for the duration
(`GraphOp` carries the layer attributes; the node's arguments let the op rerun with another weight).
Anything else raises `Unsupported`, and the caller falls back.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call

from ..model import Site, _graph_weight_nodes, _module_sites

_CHUNK_ELEMS = 1 << 24  # per-sample intermediates are built in chunks of at most ~16M elements


class Unsupported(Exception):
    """This site's per-sample gradients cannot be formed from module hooks."""


def _conv_patches(m: nn.Module, a: torch.Tensor) -> torch.Tensor:
    """(N, Cin, *spatial) -> (N, positions, Cin·k) patches laid out like `weight.reshape(O, -1)`."""
    if m.padding_mode != "zeros":
        raise Unsupported(f"padding_mode={m.padding_mode!r}")
    one_d = a.dim() == 3
    if one_d:
        a = a.unsqueeze(2)
    k = (1, *m.kernel_size) if one_d else tuple(m.kernel_size)
    s = (1, *m.stride) if one_d else tuple(m.stride)
    d = (1, *m.dilation) if one_d else tuple(m.dilation)
    if isinstance(m.padding, str):
        pads = []
        if m.padding == "same":
            for kk, dd in zip(reversed(k), reversed(d), strict=False):
                total = dd * (kk - 1)
                pads += [total // 2, total - total // 2]
            a = F.pad(a, pads)
        p = (0, 0)
    else:
        p = (0, *m.padding) if one_d else tuple(m.padding)
    return F.unfold(a, k, dilation=d, padding=p, stride=s).transpose(1, 2)


@dataclass(frozen=True)
class GraphOp:
    """The layer attributes a tap reads, taken from an exported graph's op node (a `.pt2` has no modules)."""

    kind: str
    groups: int = 1
    kernel_size: tuple = ()
    stride: tuple = ()
    padding: tuple | str = ()
    dilation: tuple = ()
    padding_mode: str = "zeros"
    num_embeddings: int = 0
    padding_idx: int | None = None
    transposed: bool = False  # addmm(bias, x, W) with W stored (in, out), as Hugging Face Conv1D does

    @classmethod
    def of(cls, node: torch.fx.Node, kind: str, weight: torch.Tensor) -> GraphOp:
        a = list(node.args)
        if kind == "embedding":
            pad = a[2] if len(a) > 2 else -1
            return cls("embedding", num_embeddings=weight.shape[0], padding_idx=None if pad < 0 else pad)
        if node.target == torch.ops.aten.addmm.default:
            return cls("linear", transposed=True)
        if kind == "linear":
            return cls("linear")
        nd = weight.dim() - 2
        if node.target == _GRAPH_OPS_CONVOLUTION:
            if a[6]:
                raise Unsupported("transposed convolution")
            stride, padding, dilation, groups = a[3], a[4], a[5], a[8]
        else:
            stride, padding, dilation, groups = (a + [None] * 7)[3:7]
        if nd == 3:
            raise Unsupported("Conv3d")

        def tup(v, default):
            v = default if v is None else v
            return tuple(v) if isinstance(v, (list, tuple)) else (v,) * nd

        padding = padding if isinstance(padding, str) else tup(padding, 0)
        return cls("conv", groups or 1, tuple(weight.shape[2:]), tup(stride, 1), padding, tup(dilation, 1))


_GRAPH_OPS_CONVOLUTION = torch.ops.aten.convolution.default


class _GraphHook:
    """Called after a site's op node with (output, the op's arguments): the graph form of a forward hook.
    The arguments are kept so the op can be rerun with another weight or input (`SiteTap.forward_with`)."""

    def __init__(self, tap: SiteTap, node: torch.fx.Node):
        self.tap, self.target = tap, node.target
        self.act = 1 if tap.kind == "embedding" or tap.module.transposed else 0  # the input's argument
        self.w = 2 if tap.module.transposed else 1 - self.act  # the weight's
        self.__name__ = f"tap_{tap.site.name}"

    def __call__(self, out, args, kwargs):
        r = self.tap.hook(None, (args[self.act],), out)
        if not self.tap.muted:
            self.tap.call = (self, args, kwargs)
        return out if r is None else r

    def rerun(self, args, kwargs, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        a = list(args)
        a[self.act], a[self.w] = x, w  # (input, weight, ...), embedding's (weight, ids, ...), addmm's (b, x, W)
        return self.target(*a, **kwargs)


class SiteTap:
    """One site's module: its recorded input and output, and per-sample products with a gradient δ."""

    def __init__(self, site: Site, module: nn.Module | GraphOp, weight: torch.Tensor | None = None):
        self.site, self.module = site, module
        self.weight = module.weight if weight is None else weight  # the site's parameter
        self.call = None  # graph taps: (hook, args, kwargs) of the op's last call
        self.kind = module.kind if isinstance(module, GraphOp) else (
            "embedding"
            if isinstance(module, nn.Embedding)
            else ("linear" if isinstance(module, nn.Linear) else "conv")
        )
        if isinstance(module, nn.Conv3d) or isinstance(module, nn.modules.conv._ConvTransposeNd):
            raise Unsupported(f"{type(module).__name__}")
        self.groups = getattr(module, "groups", 1)
        self.inp: torch.Tensor | None = None
        self.out: torch.Tensor | None = None
        self.calls = 0
        self.batch = 0  # samples in the current forward
        self.muted = False  # set while the estimator itself calls the module
        self.act_params: dict[str, dict] = {}  # calibrated input scales per activation format (WEIGHT:ACT)
        self._rows: torch.Tensor | None = None

    # ---- recording -------------------------------------------------------------------------------
    def hook(self, module, inputs, output):
        if self.muted:
            return None
        self.calls += 1
        if self.calls > 1:
            raise Unsupported(f"module of site {self.site.name!r} runs more than once per forward")
        inp = inputs[0].detach()
        if self.batch > 1 and output.shape[0] == 1 and inp.shape[0] == 1:
            # shared by the batch, broadcast downstream (BERT's position ids): one copy per sample
            inp, output = inp.expand(self.batch, *inp.shape[1:]), output.expand(self.batch, *output.shape[1:])
        self.inp = inp
        self._rows = None
        self.out = output
        # downstream in-place ops (ReLU(inplace=True)) must not rewrite the tensor we take δ at
        return output.clone()

    def forward_with(self, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        """The site's op on input `x` with weight `w` (bias and layer settings as in the last forward)."""
        if isinstance(self.module, GraphOp):
            hook, args, kwargs = self.call
            return hook.rerun(args, kwargs, x, w)
        self.muted = True
        try:
            return functional_call(self.module, {"weight": w}, (x,))
        finally:
            self.muted = False

    def reset(self, batch: int = 0) -> None:
        self.inp = self.out = self._rows = self.call = None
        self.calls = 0
        self.batch = batch

    # ---- layout ----------------------------------------------------------------------------------
    def rows(self) -> torch.Tensor:
        """Input as (N, T, groups, K_g): K_g matches the columns of weight.reshape(O, -1)."""
        if self._rows is None:
            a = self.inp.float()
            n = a.shape[0]
            a = a.reshape(n, -1, a.shape[-1]) if self.kind == "linear" else _conv_patches(self.module, a)
            self._rows = a.reshape(n, a.shape[1], self.groups, -1)
        return self._rows

    def deltas(self, g: torch.Tensor) -> torch.Tensor:
        """Output gradient as (N, T, groups, O_g)."""
        g = g.float()
        n = g.shape[0]
        if self.kind == "linear":
            g = g.reshape(n, -1, g.shape[-1])
        else:
            g = g.reshape(n, g.shape[1], -1).transpose(1, 2)
        return g.reshape(n, g.shape[1], self.groups, -1)

    def weight_rows(self, w: torch.Tensor) -> torch.Tensor:
        """A weight-shaped tensor as (groups, O_g, K_g)."""
        w = w.float().T if getattr(self.module, "transposed", False) else w.float()
        return w.reshape(self.groups, w.shape[0] // self.groups, -1)

    # ---- embedding: per-(sample, row) gradient blocks ------------------------------------------
    def _embedding_blocks(self, g: torch.Tensor):
        ids = self.inp.reshape(self.inp.shape[0], -1)
        n, t = ids.shape
        g = g.float().reshape(n * t, -1)
        keys = (torch.arange(n, device=ids.device)[:, None] * self.module.num_embeddings + ids).reshape(-1)
        pad = self.module.padding_idx
        if pad is not None:  # autograd gives the padding row no gradient
            keep = ids.reshape(-1) != pad
            keys, g = keys[keep], g[keep]
        uniq, inv = torch.unique(keys, return_inverse=True)
        blocks = torch.zeros(len(uniq), g.shape[1], device=g.device).index_add_(0, inv, g)
        return uniq // self.module.num_embeddings, uniq % self.module.num_embeddings, blocks, n

    # ---- per-sample products -------------------------------------------------------------------
    def _chunks(self, n: int, per_sample: int):
        step = max(1, _CHUNK_ELEMS // max(per_sample, 1))
        for i in range(0, n, step):
            yield slice(i, min(n, i + step))

    def _dense_grads(self, a: torch.Tensor, d: torch.Tensor):
        """Yield (slice, per-sample gradients (n, groups, O_g, K_g)) in memory-bounded chunks."""
        per = d.shape[2] * d.shape[3] * a.shape[3]
        for sl in self._chunks(a.shape[0], per + a.shape[1] * (a.shape[3] + d.shape[3])):
            yield sl, torch.einsum("ntgo,ntgk->ngok", d[sl], a[sl])

    def sq_norms(self, g: torch.Tensor) -> torch.Tensor:
        """‖G_x‖²_F per sample, shape (N,)."""
        if self.kind == "embedding":
            samp, _, blocks, n = self._embedding_blocks(g)
            return torch.zeros(n, device=blocks.device).index_add_(0, samp, blocks.pow(2).sum(1))
        a, d = self.rows(), self.deltas(g)
        n, t, _, k = a.shape
        if t == 1:
            return (a.pow(2).sum(-1) * d.pow(2).sum(-1)).sum((1, 2))
        out = torch.empty(n, device=a.device)
        if t * t * (k + d.shape[3]) < t * k * d.shape[3]:  # Gram form: Σ_{t,t'} (a_t·a_t')(δ_t·δ_t')
            for sl in self._chunks(n, t * t * self.groups):
                ga = torch.einsum("ntgk,nsgk->ngts", a[sl], a[sl])
                gd = torch.einsum("ntgo,nsgo->ngts", d[sl], d[sl])
                out[sl] = (ga * gd).sum((1, 2, 3))
            return out
        for sl, gx in self._dense_grads(a, d):
            out[sl] = gx.pow(2).sum((1, 2, 3))
        return out

    def contract(self, g: torch.Tensor, mats: Sequence[torch.Tensor], power: int) -> torch.Tensor:
        """Σ_i (G_x)_i^power · M_i per sample and matrix M (weight-shaped): shape (N, len(mats))."""
        if self.kind == "embedding":
            samp, row, blocks, n = self._embedding_blocks(g)
            bp = blocks.pow(power)
            out = torch.zeros(n, len(mats), device=blocks.device)
            for j, m in enumerate(mats):
                out[:, j].index_add_(0, samp, (bp * m.float()[row]).sum(1))
            return out
        a, d = self.rows(), self.deltas(g)
        ms = torch.stack([self.weight_rows(m) for m in mats])  # (F, groups, O_g, K_g)
        if a.shape[1] == 1:  # G_x = δ aᵀ is rank one: never materialize it
            return torch.einsum("ngo,fgok,ngk->nf", d[:, 0].pow(power), ms, a[:, 0].pow(power))
        out = torch.empty(a.shape[0], len(mats), device=a.device)
        flat = ms.reshape(len(mats), -1)
        for sl, gx in self._dense_grads(a, d):
            out[sl] = gx.pow(power).reshape(gx.shape[0], -1) @ flat.T
        return out


class Taps:
    """Context manager: hooks on the sites' modules; `deltas(out_grads)` runs one backward."""

    def __init__(self, model: nn.Module, sites: list[Site]):
        found = _module_sites(model)  # param -> every (kind, module) that uses it
        self.taps: list[SiteTap] = []
        self._graph = None
        if not found and isinstance(model, torch.fx.GraphModule):
            found = self._graph_sites(model)
        for s in sites:
            if s.param not in found:
                if not found and isinstance(model, torch.fx.GraphModule):  # an unlifted torch.export program
                    raise Unsupported("a .pt2 graph has no Linear/Conv/Embedding modules to hook; load the model as "
                                      "an nn.Module (a state dict with --factory)")
                raise Unsupported(f"site {s.name!r} is not the weight of a Linear/Conv/Embedding module")
            if len(found[s.param]) > 1:
                raise Unsupported(f"site {s.name!r} shares its weight with another module")
            if isinstance(found[s.param][0][1], Unsupported):
                raise found[s.param][0][1]
            op = found[s.param][0][1]
            self.taps.append(SiteTap(s, op, model.get_parameter(s.param) if isinstance(op, GraphOp) else None))
        self._handles = []

    def _graph_sites(self, gm: torch.fx.GraphModule) -> dict:
        """param -> [(kind, GraphOp)] from the op nodes of an exported graph; the nodes are kept to tap."""
        params = dict(gm.named_parameters())
        found: dict[str, list] = {}
        self._nodes: dict[str, torch.fx.Node] = {}
        for node, (kind, param) in _graph_weight_nodes(gm).items():
            try:
                op = GraphOp.of(node, kind if kind in ("linear", "embedding") else "conv", params[param])
            except Unsupported as e:
                op = e
            found.setdefault(param, []).append((kind, op))
            self._nodes[param] = node
        self._graph = gm
        return found

    def __enter__(self) -> Taps:
        if self._graph is None:
            self._handles = [t.module.register_forward_hook(t.hook) for t in self.taps]
            return self
        graph, self._added = self._graph.graph, []
        for t in self.taps:
            node = self._nodes[t.site.param]
            with graph.inserting_after(node):
                new = graph.call_function(_GraphHook(t, node), (node, tuple(node.args), dict(node.kwargs)))
            node.replace_all_uses_with(new, delete_user_cb=lambda u, new=new: u is not new)
            self._added.append((node, new))
        self._graph.recompile()
        return self

    def __exit__(self, *exc) -> None:
        for h in self._handles:
            h.remove()
        if self._graph is not None:
            for node, new in self._added:
                new.replace_all_uses_with(node)
                self._graph.graph.erase_node(new)
            self._graph.recompile()
        for t in self.taps:
            t.reset()

    def reset(self, batch: int = 0) -> None:
        """Forget the last forward; `batch` is the number of samples in the next one."""
        for t in self.taps:
            t.reset(batch)

    def check(self) -> None:
        missing = [t.site.name for t in self.taps if t.out is None]
        if missing:
            raise Unsupported(f"sites {missing} did not run in the forward pass")
        if any(not t.out.requires_grad for t in self.taps):
            raise Unsupported("site outputs do not require grad (are the site weights frozen?)")

    def deltas(self, out: torch.Tensor, cotangent: torch.Tensor, retain: bool = True) -> list[torch.Tensor]:
        """δ at every site's output for the backward of `out` with `cotangent`."""
        outs = [t.out for t in self.taps]
        return list(
            torch.autograd.grad(
                out,
                outs,
                grad_outputs=cotangent,
                retain_graph=retain,
                allow_unused=True,
                materialize_grads=True,
            )
        )
