"""Is the model's output piecewise linear in each site's weight? Then Hessian blocks are Gauss-Newton blocks.

The Hessian of L(z(W)) is Jᵀ(∂²L/∂z²)J + Σ_k (∂L/∂z_k) ∂²z_k/∂W². If z is piecewise linear in one
weight block W_l (others fixed) — true for networks of linear/conv layers, ReLU, max/avg pooling,
eval-mode BatchNorm, residual adds and reshapes — the second term of the diagonal block vanishes
almost everywhere, so Tr(H_ll) = Tr(GGN_ll) exactly and the GGN trace needs no probe noise.
We check this by recording every torch function the forward applies to a weight-dependent tensor,
with the set of site weights each tensor depends on: a product (linear, conv, matmul, mul) of two
tensors that depend on the same weight is quadratic in it — the tied LM head `F.linear(h, emb.weight)`,
where h comes from `emb` too — so the GGN is not the Hessian there. Op names are matched without
their aten overload (`aten.conv2d.default` in an exported graph is `conv2d`).
"""

from __future__ import annotations

import weakref

import torch
from torch import nn
from torch.overrides import TorchFunctionMode

from ..model import call_model

# products: linear in each weight-dependent argument only while the others do not depend on weights
_ONE_VARIABLE = {
    "mul",
    "__mul__",
    "__rmul__",
    "mul_",
    "div",
    "__truediv__",
    "div_",
    "matmul",
    "__matmul__",
    "mm",
    "bmm",
}
# ops that are (piecewise) linear in each weight-dependent tensor argument
_LINEAR = {
    "linear",
    "conv1d",
    "conv2d",
    "conv3d",
    "conv_transpose1d",
    "conv_transpose2d",
    "embedding",
    "relu",
    "relu_",
    "relu6",
    "hardtanh",
    "hardtanh_",
    "leaky_relu",
    "leaky_relu_",
    "max_pool1d",
    "max_pool2d",
    "max_pool3d",
    "max_pool1d_with_indices",
    "max_pool2d_with_indices",
    "avg_pool1d",
    "avg_pool2d",
    "avg_pool3d",
    "adaptive_avg_pool1d",
    "adaptive_avg_pool2d",
    "adaptive_avg_pool3d",
    "adaptive_max_pool1d",
    "adaptive_max_pool2d",
    "adaptive_max_pool2d_with_indices",
    "flatten",
    "view",
    "reshape",
    "permute",
    "transpose",
    "contiguous",
    "__getitem__",
    "add",
    "__add__",
    "__radd__",
    "__iadd__",
    "add_",
    "sub",
    "__sub__",
    "__rsub__",
    "neg",
    "__neg__",
    "cat",
    "stack",
    "split",
    "chunk",
    "squeeze",
    "unsqueeze",
    "mean",
    "sum",
    "pad",
    "clone",
    "t",
    "float",
    "to",
    "type_as",
    "expand",
    "expand_as",
    "repeat",
    "pixel_shuffle",
    "unflatten",
    "narrow",
    "select",
    "detach",
    "identity",
    "dropout",
    "batch_norm",
    "_native_batch_norm_legit_no_training",
} | _ONE_VARIABLE
# ops whose output is a product of their tensor arguments: quadratic when two depend on one weight
_PRODUCT = _ONE_VARIABLE | {"linear", "conv1d", "conv2d", "conv3d", "conv_transpose1d", "conv_transpose2d",
                            "addmm", "einsum", "convolution"}
_UNKNOWN = frozenset({-1})  # a weight-dependent tensor made where we could not see (conservatively shared)

_TRAINING_ARG = {"batch_norm": 5, "dropout": 2}  # position of the `training` flag


def _tensors(obj):
    if isinstance(obj, torch.Tensor):
        yield obj
    elif isinstance(obj, (tuple, list)):
        for o in obj:
            yield from _tensors(o)
    elif isinstance(obj, dict):
        for o in obj.values():
            yield from _tensors(o)


def op_name(func) -> str:
    """`conv2d` for torch.nn.functional.conv2d and for aten.conv2d.default alike."""
    return getattr(func, "__name__", str(func)).split(".")[0]


class _Recorder(TorchFunctionMode):
    def __init__(self):
        super().__init__()
        self.nonlinear: list[str] = []
        self.deps: dict[int, tuple[weakref.ref, frozenset]] = {}

    def _deps(self, t: torch.Tensor) -> frozenset:
        if isinstance(t, nn.Parameter) or t.is_leaf:
            return frozenset({id(t)})
        ref, d = self.deps.get(id(t), (None, None))
        return d if ref is not None and ref() is t else _UNKNOWN

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        outs = [t for t in _tensors(out) if t.requires_grad]
        if not outs:
            return out
        name = op_name(func)
        arg_deps = [self._deps(t) for t in _tensors((args, kwargs)) if t.requires_grad]
        union = frozenset().union(*arg_deps)
        for t in outs:
            self.deps[id(t)] = (weakref.ref(t), union)
        if name not in _LINEAR:
            self.nonlinear.append(name)
        elif name in _PRODUCT and sum(len(d) for d in arg_deps) > len(union):
            self.nonlinear.append(f"{name} of two tensors that depend on the same weight")
        elif (
            name in _TRAINING_ARG
            and kwargs.get("training", len(args) > _TRAINING_ARG[name] and args[_TRAINING_ARG[name]]) is True
        ):
            self.nonlinear.append(f"{name} in training mode")
        return out


def nonlinear_ops(model: nn.Module, x) -> list[str]:
    """Ops on weight-dependent tensors that are not piecewise linear (none: GGN blocks are exact)."""
    rec = _Recorder()
    with torch.enable_grad(), rec:
        call_model(model, x)
    return sorted(set(rec.nonlinear))
