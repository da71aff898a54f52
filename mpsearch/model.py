"""Find a model's quantizable sites, count their MACs, and fingerprint the model.

A site is one weight that feeds a linear, convolution or embedding op. Plain `nn.Module`s are
searched by module type; a `torch.export` program comes back as a graph module without
`nn.Linear`/`nn.Conv2d` submodules, so there the sites are the weights that feed those aten ops.
Both give the same site names (the weight's path without `.weight`).
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

    @property
    def numel(self) -> int:
        return math.prod(self.shape)

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


def batch_size_of(x) -> int:
    if isinstance(x, dict):
        x = next(iter(x.values()))
    if isinstance(x, (tuple, list)):
        x = x[0]
    return int(x.shape[0])


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


def _call_macs(kind: str, weight_shape: tuple[int, ...], out_shape: tuple[int, ...]) -> int:
    """MACs of one call: every output element of a linear/conv reduces over prod(weight.shape[1:])."""
    return 0 if kind == "embedding" else math.prod(out_shape) * math.prod(weight_shape[1:])


def _graph_weight_nodes(gm: torch.fx.GraphModule) -> dict[torch.fx.Node, tuple[str, str]]:
    """op node -> (kind, weight FQN) for every linear/conv/embedding op whose weight is a parameter."""
    params = dict(gm.named_parameters())
    out: dict[torch.fx.Node, tuple[str, str]] = {}
    for node in gm.graph.nodes:
        if node.op != "call_function" or node.target not in _GRAPH_OPS:
            continue
        kind, idx = _GRAPH_OPS[node.target]
        w = node.args[idx] if len(node.args) > idx else None
        if isinstance(w, torch.fx.Node) and w.op == "get_attr" and w.target in params:
            if kind == "conv":
                kind = f"conv{params[w.target].dim() - 2}d"
            out[node] = (kind, w.target)
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
            w = self.env[n.args[0 if kind == "embedding" else 1]]
            in_shape = tuple(a.shape) if a is not None else ()
            self.seen.setdefault(param, []).append(
                (in_shape, tuple(out.shape), _call_macs(kind, tuple(w.shape), out.shape)))
        return out


def _traced(calls: list, batch: int) -> dict:
    """Per-sample MACs and activation shapes from each call's (input shape, output shape, MACs)."""
    i, o, _ = calls[0]
    macs = sum(c[2] for c in calls) // max(batch, 1)
    return {"macs": macs, "input_shape": tuple(i[1:]), "output_shape": tuple(o[1:])}


def sites(model: nn.Module, example=None) -> list[Site]:
    """The model's quantizable sites, in execution order when `example` is given (else module order).

    With an example input, one forward pass records each site's per-sample MACs and activation
    shapes; sites never executed by that forward are dropped (they cannot affect the output).
    """
    params = dict(model.named_parameters())
    graph_nodes = None
    found = _module_sites(model)
    if found:
        kinds = {p: users[0][0] for p, users in found.items()}
    elif isinstance(model, torch.fx.GraphModule):
        graph_nodes = _graph_weight_nodes(model)
        kinds = {p: k for k, p in graph_nodes.values()}
    else:
        kinds = {}
    if not kinds:
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
            rec = _ShapeRecorder(model, graph_nodes)
            rec.run(*(example if isinstance(example, (tuple, list)) else (example,)))
            calls = rec.seen
        else:
            hooks = []
            for p, users in found.items():
                for kind, mod in users:
                    def hook(m, inp, out, p=p, kind=kind):
                        calls.setdefault(p, []).append(
                            (tuple(inp[0].shape), tuple(out.shape), _call_macs(kind, base[p].shape, out.shape)))
                    hooks.append(mod.register_forward_hook(hook))
            try:
                call_model(model, example)
            finally:
                for h in hooks:
                    h.remove()
    n = batch_size_of(example)
    order = list(calls)  # first-call order = execution order
    traced = [replace(base[p], **_traced(calls[p], n)) for p in order]
    if not traced:
        raise NoQuantizableSites("no Linear/Conv/Embedding layer ran on the example input; check the input")
    return traced


def fingerprint(model: nn.Module) -> str:
    """sha256 over every parameter's and buffer's name, shape, dtype and bytes: a plan binds to these
    weights, and a BatchNorm's running statistics change the function as much as its weights do."""
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
