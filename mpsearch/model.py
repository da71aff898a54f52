"""Find a model's quantizable sites, count their MACs, and fingerprint the model.

A site is one weight that feeds a linear, convolution or embedding op. With an example input, a
plain `nn.Module` is traced by the functions its forward calls (`F.linear`, `F.conv2d`,
`F.embedding`, `torch.addmm`, `F.multi_head_attention_forward`), whatever module or function makes
the call — so a weight used functionally (the tied head `F.linear(h, emb.weight)`),
`nn.MultiheadAttention`'s `in_proj_weight`, and Hugging Face's `Conv1D` (an addmm with the weight
stored (in, out)) are sites as they are in the exported graph. Without an example, modules are
searched by type. A `torch.export` program comes back as a graph module without `nn.Linear`
submodules, so there the sites are the weights that feed those aten ops. Both give the same site
names (the weight's path without `.weight`). A weight used by ops of two kinds (embedding and the
tied head's linear) is one site whose `uses` list the other kinds, so the cost model prices both.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterable
from contextlib import contextmanager
from dataclasses import dataclass, replace

import torch
from torch import nn

from .errors import NoQuantizableSites
from .layout import WeightLayout, layout_for

_MODULE_KINDS: tuple[tuple[type[nn.Module], str], ...] = (
    (nn.Linear, "linear"),
    (nn.Conv1d, "conv1d"),
    (nn.Conv2d, "conv2d"),
    (nn.Conv3d, "conv3d"),
    (nn.Embedding, "embedding"),
)

_aten = torch.ops.aten
# aten op -> (kind, index of the weight argument)
_GRAPH_OPS = {
    _aten.linear.default: ("linear", 1),
    _aten.conv1d.default: ("conv1d", 1),
    _aten.conv2d.default: ("conv2d", 1),
    _aten.conv3d.default: ("conv3d", 1),
    _aten.convolution.default: ("conv", 1),
    _aten.embedding.default: ("embedding", 0),
    _aten.addmm.default: ("linear", 2),  # HF Conv1D: addmm(bias, x, W) with W stored (in, out)
}


@dataclass(frozen=True)
class Site:
    """One quantizable weight use. `macs` and activation shapes are per sample (0 / None if untraced)."""

    name: str
    kind: str
    param: str
    shape: tuple[int, ...]
    macs: int = 0
    input_shape: tuple[int, ...] | None = None
    output_shape: tuple[int, ...] | None = None
    uses: tuple[tuple[str, tuple[int, ...], tuple[int, ...]], ...] = ()  # (kind, in, out) of other-kind uses
    active: float = 1.0  # fraction of the weight one token uses: top_k / experts for MoE experts (mpsearch.hf)

    @property
    def numel(self) -> int:
        return math.prod(self.shape)

    @property
    def layout(self) -> WeightLayout:
        """How a format reads this weight (MoE experts: (E·out, in) rows; see `layout.WeightLayout`)."""
        return layout_for(self.kind)

    @property
    def act_numel(self) -> int:
        """Elements of the activation feeding the op, per sample (0 if untraced)."""
        return math.prod(self.input_shape) if self.input_shape else 0


def set_mode(model: nn.Module, training: bool) -> bool:
    """`model.train(training)` where supported; returns whether it was. An exported program's module has
    its mode baked in at export time and refuses `.eval()`/`.train()`: it is left as it is."""
    try:
        model.train(training)
    except NotImplementedError:
        return False
    return True


@contextmanager
def eval_mode(model: nn.Module):
    """Evaluation mode for the duration, then the mode it had (see `set_mode`)."""
    was = model.training
    changed = set_mode(model, False)
    try:
        yield model
    finally:
        if changed:
            model.train(was)


def call_model(model: nn.Module, x):
    """Inputs come as a tensor, a tuple of positional args, or a dict of keyword args."""
    if isinstance(x, dict):
        return model(**x)
    if isinstance(x, (tuple, list)):
        return model(*x)
    return model(x)


def _first_tensor(x) -> torch.Tensor:
    if isinstance(x, dict):
        x = next(iter(x.values()))
    return x[0] if isinstance(x, (tuple, list)) else x


def batch_size_of(x) -> int:
    if isinstance(x, dict):
        x = next(iter(x.values()))
    if isinstance(x, (tuple, list)):
        x = x[0]
    return int(x.shape[0])


def _alias_key(t: torch.Tensor):
    """Two parameters with this key are one tensor: same buffer, offset, shape, strides and dtype."""
    return (t.device, t.untyped_storage().data_ptr(), t.storage_offset(), tuple(t.shape), tuple(t.stride()),
            t.dtype)


def tie_aliases(model: nn.Module) -> dict[str, str]:
    """Make parameters that share one storage one Parameter, named by its first path; returns alias ->
    that name. A loaded `.pt2` of a tied model (GPT-2's `lm_head` = `wte`) comes back as two Parameters
    over one buffer, so `named_parameters()` would list the shared weight twice: once tied (in place;
    the function computed is unchanged), every form gives the nn.Module's one name, fingerprint and size."""
    first: dict[tuple, tuple[str, nn.Parameter]] = {}
    aliases: dict[str, str] = {}
    for name, p in model.named_parameters(remove_duplicate=False):
        if p.numel() == 0 or p.device.type == "meta":
            continue
        canon, q = first.setdefault(_alias_key(p), (name, p))
        if canon == name:
            continue
        aliases[name] = canon
        if q is not p:
            prefix, _, leaf = name.rpartition(".")
            model.get_submodule(prefix)._parameters[leaf] = q
    return aliases


def canonical_names(model: nn.Module) -> dict[str, str]:
    """Every parameter path (aliases included) -> the canonical path `named_parameters()` gives."""
    tie_aliases(model)
    canon = {id(p): n for n, p in model.named_parameters()}
    return {n: canon[id(p)] for n, p in model.named_parameters(remove_duplicate=False)}


def _site_name(param: str) -> str:
    return param[: -len(".weight")] if param.endswith(".weight") else param


def _module_sites(model: nn.Module) -> dict[str, list[tuple[str, nn.Module]]]:
    """param FQN -> [(kind, module), ...]; a tied weight is one site (named after the parameter) whose
    MACs count every module that uses it, and whose kind is its first user's."""
    by_param: dict[int, str] = {id(p): n for n, p in model.named_parameters()}
    found: dict[str, list[tuple[str, nn.Module]]] = {}
    for _, mod in model.named_modules():
        for cls, kind in _MODULE_KINDS:
            w = getattr(mod, "weight", None)
            if isinstance(mod, cls) and isinstance(w, torch.Tensor) and id(w) in by_param:
                found.setdefault(by_param[id(w)], []).append((kind, mod))
                break
    return found


def _functional_weights(model: nn.Module) -> dict[str, str]:
    """Weights whose module calls the op itself rather than through a Linear submodule, found by type when
    there is no example to trace: HF `Conv1D` (addmm, weight (in, out)), HF MoE routers (`*Router`,
    F.linear) and `nn.MultiheadAttention`'s input projections. They are sites with an example too, so a
    plan's check (which has no example) must find them."""
    by_param = {id(p): n for n, p in model.named_parameters()}
    out: dict[str, str] = {}
    for _, mod in model.named_modules():
        if type(mod).__name__ == "Conv1D" or type(mod).__name__.endswith("Router"):  # HF MoE router: F.linear
            ws = [getattr(mod, "weight", None)]
        elif isinstance(mod, nn.MultiheadAttention):
            ws = [getattr(mod, a, None) for a in ("in_proj_weight", "q_proj_weight", "k_proj_weight", "v_proj_weight")]
        else:
            continue
        out |= {by_param[id(w)]: "linear" for w in ws if isinstance(w, torch.Tensor) and id(w) in by_param}
    return out


def _call_macs(kind: str, weight_shape: tuple[int, ...], out_shape: tuple[int, ...], k: int | None = None) -> int:
    """MACs of one call: every output element of a linear/conv reduces over prod(weight.shape[1:])
    (over `k` when given: a weight stored (in, out) for addmm reduces over its first dim)."""
    if kind == "embedding":
        return 0
    return math.prod(out_shape) * (math.prod(weight_shape[1:]) if k is None else k)


def _graph_weight_nodes(gm: torch.fx.GraphModule) -> dict[torch.fx.Node, tuple[str, str]]:
    """op node -> (kind, weight FQN) for every linear/conv/embedding op whose weight is a parameter; a tied
    weight's alias (the graph reads GPT-2's head as `lm_head.weight`) maps to its canonical name."""
    names = canonical_names(gm)
    params = {n: gm.get_parameter(c) for n, c in names.items()}
    out: dict[torch.fx.Node, tuple[str, str]] = {}
    for node in gm.graph.nodes:
        if node.op != "call_function" or node.target not in _GRAPH_OPS:
            continue
        kind, idx = _GRAPH_OPS[node.target]
        w = node.args[idx] if len(node.args) > idx else None
        if isinstance(w, torch.fx.Node) and w.op == "get_attr" and w.target in params:
            if kind == "conv":
                kind = f"conv{params[w.target].dim() - 2}d"
            out[node] = (kind, names[w.target])
    return out


class _ShapeRecorder(torch.fx.Interpreter):
    def __init__(self, gm: torch.fx.GraphModule, nodes: dict):
        super().__init__(gm)
        self.nodes = nodes
        self.seen: dict[str, list[tuple[tuple[int, ...], tuple[int, ...]]]] = {}

    def run_node(self, n):
        out = super().run_node(n)
        if n in self.nodes:
            kind, param = self.nodes[n]
            act = n.args[1] if kind == "embedding" else n.args[0]
            a = self.env[act] if isinstance(act, torch.fx.Node) else None
            if n.target == _aten.addmm.default:
                act = n.args[1]
                a = self.env[act]
            w = self.env[n.args[_GRAPH_OPS[n.target][1]]]
            in_shape = tuple(a.shape) if a is not None else ()
            k = int(w.shape[0]) if n.target == _aten.addmm.default else None
            self.seen.setdefault(param, []).append(
                (in_shape, tuple(out.shape), _call_macs(kind, tuple(w.shape), out.shape, k), kind))
        return out


def _traced(calls: list, batch: int) -> dict:
    """Per-sample MACs and activation shapes from each call's (input shape, output shape, MACs, kind)."""
    i, o, _, kind = calls[0]
    macs = sum(c[2] for c in calls) // max(batch, 1)
    if kind == "linear" and i and o and (i[0] != batch or o[0] != batch):
        # the batch is not the leading dim (MHA's (L, N, E) in an exported graph): rows per sample
        i = (batch, math.prod(i[:-1]) // max(batch, 1), i[-1])
        o = (batch, math.prod(o[:-1]) // max(batch, 1), o[-1])
    uses, seen = [], {kind}
    for ci, co, _, k in calls[1:]:
        if k not in seen:
            seen.add(k)
            uses.append((k, tuple(ci[1:]), tuple(co[1:])))
    return {"kind": kind, "macs": macs, "input_shape": tuple(i[1:]), "output_shape": tuple(o[1:]),
            "uses": tuple(uses)}


_F = torch.nn.functional
_FUNC_KINDS = {_F.linear: "linear", _F.conv1d: "conv1d", _F.conv2d: "conv2d", _F.conv3d: "conv3d",
               _F.embedding: "embedding"}


class _UseRecorder(torch.overrides.TorchFunctionMode):
    """Every linear/conv/embedding call whose weight is one of the model's parameters, in call order:
    (input shape, output shape, MACs, kind) per parameter name — whoever makes the call."""

    def __init__(self, names: dict[int, str]):
        super().__init__()
        self.names = names
        self.seen: dict[str, list] = {}

    def _add(self, w, kind, inp, out, k=None):
        name = self.names.get(id(w))
        if name is not None and isinstance(inp, torch.Tensor) and isinstance(out, torch.Tensor):
            self.seen.setdefault(name, []).append(
                (tuple(inp.shape), tuple(out.shape), _call_macs(kind, tuple(w.shape), tuple(out.shape), k), kind))

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        kind = _FUNC_KINDS.get(func)
        if kind == "embedding":
            self._add(args[1] if len(args) > 1 else kwargs.get("weight"), kind, args[0], out)
        elif kind is not None:
            self._add(args[1] if len(args) > 1 else kwargs.get("weight"), kind, args[0], out)
        elif func is torch.addmm and len(args) >= 3 and isinstance(args[2], torch.Tensor):
            self._add(args[2], "linear", args[1], out, k=int(args[2].shape[0]))
        elif func is _F.multi_head_attention_forward:
            self._mha(args, kwargs, out)
        return out

    def _mha(self, args, kwargs, out):
        """`nn.MultiheadAttention` bypasses F.linear: its projections, from the call's own arguments."""
        names = ["query", "key", "value", "embed_dim_to_check", "num_heads", "in_proj_weight", "in_proj_bias",
                 "bias_k", "bias_v", "add_zero_attn", "dropout_p", "out_proj_weight", "out_proj_bias"]
        a = dict(zip(names, args)) | kwargs
        q = a["query"]
        if q.dim() != 3:
            return
        q = q.transpose(0, 1)  # (L, N, E) -> (N, L, E): batch first, as the graph sees it
        e = q.shape[-1]
        sep = a.get("use_separate_proj_weight", False)
        projs = [(a.get(f"{c}_proj_weight"), a[v].transpose(0, 1)) for c, v in zip("qkv", ("query", "key", "value"))] \
            if sep else [(a["in_proj_weight"], q)]
        for w, x in projs:
            if w is not None:
                self._add(w, "linear", x, x.new_empty(*x.shape[:-1], w.shape[0]))
        self._add(a["out_proj_weight"], "linear", q.new_empty(*q.shape[:-1], e), q.new_empty(*q.shape[:-1], e))


def _site_kinds(model: nn.Module):
    """(param -> kind, the graph's op nodes for an exported program else None, MoE experts blocks)."""
    graph_nodes = None
    found = _module_sites(model)
    for p, kind in _functional_weights(model).items():
        found.setdefault(p, [(kind, None)])
    # >>> llm: MoE experts blocks (one 3-D weight per projection of a layer) are sites too
    from .hf import experts_modules

    experts = experts_modules(model)
    for p, (mod, _) in experts.items():
        found.setdefault(p, []).append(("experts", mod))
    # <<< llm
    if found:
        kinds = {p: users[0][0] for p, users in found.items()}
    elif isinstance(model, torch.fx.GraphModule):
        graph_nodes = _graph_weight_nodes(model)
        kinds = {p: k for k, p in graph_nodes.values()}
    else:
        kinds = {}
    return kinds, graph_nodes, experts


def site_layouts(model: nn.Module) -> dict[str, WeightLayout]:
    """site name -> its `WeightLayout` for the sites not read as `rows` (MoE experts weights, the only
    sites of kind "experts"), for callers that hold only site names: look a site up with
    `.get(site, ROWS)`. No forward pass, and no model walk for a model without experts."""
    from .hf import experts_modules

    return {_site_name(p): layout_for("experts") for p in experts_modules(model)}


def sites(model: nn.Module, example=None) -> list[Site]:
    """The model's quantizable sites, in execution order when `example` is given (else module order).

    With an example input, one forward pass records each site's per-sample MACs and activation
    shapes; sites never executed by that forward are dropped (they cannot affect the output).
    """
    tie_aliases(model)
    params = dict(model.named_parameters())
    kinds, graph_nodes, experts = _site_kinds(model)
    if not kinds and example is None:
        raise NoQuantizableSites(
            f"{type(model).__name__} has no Linear, Conv1d/2d/3d or Embedding weight to quantize; "
            "pass a model that contains such layers"
        )
    base = {p: Site(_site_name(p), k, p, tuple(params[p].shape)) for p, k in kinds.items()}
    if example is None:
        return list(base.values())

    calls: dict[str, list] = {}
    with eval_mode(model), torch.no_grad():
        if graph_nodes is not None:
            from .static_batch import fit_rows

            example = fit_rows(model, example)  # the interpreter skips the forward that pads a static batch
            rec = _ShapeRecorder(model, graph_nodes)
            rec.run(*(example if isinstance(example, (tuple, list)) else (example,)))
            calls = rec.seen
        else:
            rec = _UseRecorder({id(p): n for n, p in params.items()})  # a tied weight: its first name
            with rec:
                call_model(model, example)
            calls = rec.seen
    n = batch_size_of(example)
    order = list(calls)  # first-call order = execution order
    traced = [replace(base.get(p) or Site(_site_name(p), calls[p][0][3], p, tuple(params[p].shape)),
                      **_traced(calls[p], n)) for p in order]
    # >>> llm: MoE experts blocks (one 3-D weight per projection; each expert's slice is not a traced use)
    done = {s.param for s in traced}
    tokens = math.prod(_first_tensor(example).shape[1:])
    traced += [Site(_site_name(p), "experts", p, tuple(params[p].shape), active=frac,
                    macs=round(tokens * frac * math.prod(params[p].shape)))
               for p, (_, frac) in experts.items() if p not in done]
    # <<< llm
    if not traced:
        raise NoQuantizableSites("no Linear/Conv/Embedding layer ran on the example input; check the input")
    return traced


def fingerprint(model: nn.Module) -> str:
    """sha256 over every parameter's and buffer's name, shape, dtype and bytes: a plan binds to these
    weights, and a BatchNorm's running statistics change the function as much as its weights do. A tied
    weight counts once, under its canonical name (`tie_aliases`), so a module and its `.pt2` agree."""
    tie_aliases(model)
    h = hashlib.sha256()
    tensors = [*model.named_parameters(), *(("buffer:" + n, b) for n, b in model.named_buffers())]
    for name, p in sorted(tensors, key=lambda kv: kv[0]):
        t = p.detach().cpu().contiguous()
        h.update(f"{name}|{tuple(t.shape)}|{t.dtype}|".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return "sha256:" + h.hexdigest()


def site_frame(site_list: Iterable[Site]):
    """A pandas table of sites for display."""
    import pandas as pd

    return pd.DataFrame(
        [{"site": s.name, "kind": s.kind, "params": s.numel, "macs": s.macs} for s in site_list]
    )
