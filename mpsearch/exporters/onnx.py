"""ONNX Runtime: the model as ONNX whose site weights stay in their plan format and run on ORT's fastest kernel for it.

The FP graph comes from `torch.onnx.export` (TorchScript path, constant folding off so every weight stays
an initializer named after its parameter and BatchNorm is not folded into it). Each site's initializer
is then replaced by one of the patterns in `onnx_nodes` (see there for why each):
- int4 weight-only Linear: `com.microsoft.MatMulNBits` (packed codes, FP16 scales, zero-points);
- other weight-only int4/int8 sites (convolutions, int8 Linears, embeddings, per-tensor scales): the codes
  as an INT4/UINT4/INT8/UINT8 initializer and `Cast → [Sub zero] → Mul scale → Reshape`, which ORT
  constant-folds at session start, so the float kernel runs on a constant weight;
- bf16 / fp16: a 16-bit initializer and a `Cast` to float (folded the same way);
- an int8 activation (`W:int8`, `W:int8_asym`, per tensor): `Clip` to the calibrated range (mpsearch's
  symmetric grid is ±127, ONNX's int8 saturates at −128), `QuantizeLinear`, `DequantizeLinear` on the
  op's input, with the weight as `DequantizeLinear` (opset 21: per tensor, `axis=0` per channel,
  `axis=1, block_size=G` per group). For an `int8_asym` convolution whose output feeds another such
  layer, BatchNorm is folded into the bias and the per-channel weight scales and the next layer's QDQ
  is repeated above the MaxPool/Flatten in between, the pattern ORT fuses into `QLinearConv`.
The decoded weights equal `Format.quantize` bit for bit (FP16 scale × integer code is exact in float32;
a folded BatchNorm rescales them by γ/σ in float32), so the ONNX model computes what
`mpsearch.apply(model, plan)` simulates up to float summation order (and ORT's int32 rounding of a fused
convolution's bias). Formats ORT's CPU kernels cannot run (INT2/3/5/6/7, FP8, MX, NVFP4) are refused,
each named.
Bytes: the site tensors (codes packed two per byte for 4-bit, scales, zero-points) equal the plan's
prediction up to one padding half-byte per 4-bit row; MatMulNBits' padding of rows to whole blocks,
other parameters (float32; the plan counts them as 16-bit) and the graph's protobuf are `other_bytes`.
"""

from __future__ import annotations

import math
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..activations import plan_params
from ..errors import ExportError
from ..plan import Plan
from ._common import (
    ExportResult,
    SiteWeight,
    atomic_file,
    need,
    plan_weights,
    predicted_bytes,
    quantized_experts,
    refuse_unsupported,
)
from .onnx_nodes import (
    MS_DOMAIN,
    conv_dq_nodes,
    conv_qdq_ok,
    fold_batchnorm,
    folded_nodes,
    int_dtype,
    nbits_block,
    nbits_node,
)

OPSET = 21
_TRACE_OPSET = 20  # the TorchScript exporter's newest; its ops are unchanged at 21, so the model is bumped
_FOLLOW = {"Transpose", "Reshape", "Identity", "Cast"}  # ops between a weight and the op that consumes it
_HOIST = {"MaxPool", "Flatten", "Reshape"}  # ops an activation grid passes through unchanged


def why_not(w: SiteWeight) -> str | None:
    """None if ONNX Runtime's CPU kernels run this site's choice, else why not."""
    f, a = w.choice.weight, w.choice.act
    if why := quantized_experts(w, "ONNX Runtime"):
        return why
    if f.is_full_precision:
        ok = True
    elif f.family == "int":
        ok = f.bits in (4, 8)
    else:
        return "ONNX Runtime's CPU kernels decode int4/int8 weights only (FP8/MX/NVFP4 need the TensorRT EP)"
    if not ok:
        return f"int{f.bits} has no ONNX integer type: use int4 or int8"
    if a is not None and not (a.family == "int" and a.bits == 8):
        return "activations must be int8 or int8_asym (per tensor)"
    if a is not None and w.record.get("act_scale") is None:
        return "the plan has no calibrated activation scale for it"
    return None


def _weight_nodes(w: SiteWeight, helper, numpy_helper) -> tuple[list, list, int]:
    """(initializers, nodes, site bytes) that compute the site's decoded weight under its parameter name."""
    f, p = w.choice.weight, w.param
    shape = list(w.weight.shape)
    if f.is_full_precision:
        import ml_dtypes

        dt = ml_dtypes.bfloat16 if f.name == "bf16" else np.float16
        vals = f.quantize(w.weight).numpy().astype(dt)
        init = numpy_helper.from_array(vals, f"{p}.{f.name}")
        return [init], [helper.make_node("Cast", [init.name], [p], to=1)], len(init.raw_data)
    enc = f.encode(w.weight)
    codes = enc.codes.to(torch.int64)
    if not f.asym:  # stored as two's complement b-bit fields; ONNX wants the signed values
        codes = torch.where(codes >= 2 ** (f.bits - 1), codes - 2**f.bits, codes)
    rows, k = codes.shape
    g = f.gran
    lead = {"pt": [], "pc": [rows], "g": [rows, math.ceil(k / max(g.group, 1))]}[g.kind]
    dt = int_dtype(f.bits, f.asym)
    q = numpy_helper.from_array(codes.numpy().astype(dt), f"{p}.codes")
    s = numpy_helper.from_array(enc.scales["scale"].numpy().astype(np.float16).reshape(lead), f"{p}.scale")
    inits = [q, s]
    dq_in = [q.name, f"{p}.scale_f32"]
    if f.asym:
        z = numpy_helper.from_array(enc.zeros.numpy().astype(dt).reshape(lead), f"{p}.zero_point")
        inits.append(z)
        dq_in.append(z.name)
    attrs = {"pt": {}, "pc": {"axis": 0}, "g": {"axis": 1, "block_size": g.group}}[g.kind]
    shape_init = numpy_helper.from_array(np.array(shape, dtype=np.int64), f"{p}.shape")
    inits.append(shape_init)
    same = list(codes.shape) == shape  # a Linear's weight: no Reshape between DQ and Gemm, so ORT fuses QDQ
    nodes = [helper.make_node("Cast", [s.name], [f"{p}.scale_f32"], to=1),
             helper.make_node("DequantizeLinear", dq_in, [p if same else f"{p}.rows"], **attrs)]
    if same:
        inits.remove(shape_init)
    else:
        nodes.append(helper.make_node("Reshape", [f"{p}.rows", shape_init.name], [p]))
    nbytes = sum(len(t.raw_data) for t in inits if t is not shape_init)
    return inits, nodes, nbytes


def _place_weights(g, items: list[SiteWeight], factors: dict, helper, numpy_helper) -> tuple[list, list, int, dict]:
    """Replace each site's initializer by its stored form: (initializers, nodes, site bytes, pattern per site)."""
    inits = {t.name: t for t in g.initializer}
    site_bytes, new_inits, new_nodes, kinds = 0, [], [], {}
    for w in items:
        g.initializer.remove(inits[w.param])
        if w.param in factors:
            ti, tn, nb, kinds[w.site] = (*conv_dq_nodes(w, factors[w.param], helper, numpy_helper), "QDQ Conv")
        else:
            ti, tn, nb, kinds[w.site] = _site_nodes(g, w, helper, numpy_helper)
        new_inits += ti
        new_nodes += tn
        site_bytes += nb
    return new_inits, new_nodes, site_bytes, kinds


def _place_acts(g, items: list[SiteWeight], fused: set[str], helper, numpy_helper) -> tuple[list, list]:
    """QDQ on the input of each int8-activation site; a second, identical QDQ above the MaxPool / Flatten /
    Reshape between it and its producer (exact: those commute with a monotone grid), so ORT sees
    `op → Q` after the producing Conv/Gemm and `DQ → op` before the consumer and fuses both. Only above a
    producer that ORT fuses (`fused`: its QDQ Conv weights)."""
    new_inits, new_nodes = [], []
    for w in items:
        if w.choice.act is None:
            continue
        found = _consumer(g, w.param)
        if found is None or found[0].op_type not in ("Conv", "Gemm", "MatMul"):
            raise ExportError(f"site {w.site}: no Conv/Gemm/MatMul consumes its weight in the ONNX graph, so "
                              "its int8 activation cannot be placed; plan it without :int8")
        node, via = found
        idx = 0 if list(node.input).index(via) != 0 else 1
        ai, an, x = _act_nodes(w, node.input[idx], helper, numpy_helper)
        new_inits += ai
        new_nodes += an
        top = _passthrough_top(g, node.input[idx])
        if top is not None and not _fused_producer(g, top.input[0], fused):
            top = None  # a float producer: an int8 MaxPool there would only be slower (NCHW uint8 kernel)
        node.input[idx] = x
        if top is not None:
            ai, an, x = _act_nodes(w, top.input[0], helper, numpy_helper, tag="act_pre")
            new_inits += ai
            new_nodes += an
            top.input[0] = x
    return new_inits, new_nodes


def _fused_producer(g, name: str, fused: set[str]) -> bool:
    """Whether tensor `name` comes (through a ReLU) from a Conv whose weight is one of `fused`."""
    for _ in range(2):
        prod = [n for n in g.node if name in n.output]
        if len(prod) != 1:
            return False
        if prod[0].op_type == "Conv":
            return len(prod[0].input) > 1 and prod[0].input[1] in fused
        if prod[0].op_type != "Relu":
            return False
        name = prod[0].input[0]
    return False


def _passthrough_top(g, name: str):
    """The first of the MaxPool/Flatten/Reshape nodes that produce `name` in a chain (None if none)."""
    top = None
    for _ in range(8):
        prod = [n for n in g.node if name in n.output]
        users = [n for n in g.node if name in n.input]
        if len(prod) != 1 or prod[0].op_type not in _HOIST or len(users) != 1:
            break
        top, name = prod[0], prod[0].input[0]
    return top


def _site_nodes(g, w: SiteWeight, helper, numpy_helper) -> tuple[list, list, int, str]:
    """(initializers, nodes, site bytes, pattern) for one site's weight, by what ORT runs fastest (module doc)."""
    f = w.choice.weight
    if f.is_full_precision:
        return (*_weight_nodes(w, helper, numpy_helper), "Cast")
    found = _chain(g, w.param)
    linear = found is not None and found[1].op_type in ("Gemm", "MatMul")
    block = nbits_block(w)
    if linear and block is not None:
        via, node, _ = found
        a, bias = node.input[0], (node.input[2] if node.op_type == "Gemm" and len(node.input) > 2 else "")
        ti, tn, nb = nbits_node(w, block, a, bias, node.output[0], helper, numpy_helper)
        for n in [*via, node]:
            g.node.remove(n)
        return ti, tn, nb, "MatMulNBits"
    if w.choice.act is not None and conv_qdq_ok(w, fused=False):
        return (*conv_dq_nodes(w, np.ones(w.weight.shape[0], np.float32), helper, numpy_helper), "DequantizeLinear")
    if w.choice.act is not None:  # QDQ, which ORT fuses into integer GEMMs (a folded weight it would requantize)
        return (*_weight_nodes(w, helper, numpy_helper), "DequantizeLinear")
    return (*folded_nodes(w, helper, numpy_helper), "folded")


def _chain(graph, name: str):
    """(pass-through nodes, consumer, its input) from weight `name` to the MatMulNBits-replaceable op it feeds:
    `Gemm(x, W, b, transB=1)` or `MatMul(x, Transpose(W))`; None if the weight feeds anything else."""
    users = [n for n in graph.node if name in n.input]
    if len(users) != 1:
        return None
    node = users[0]
    attrs = {a.name: helper_value(a) for a in node.attribute}
    if node.op_type == "Gemm" and list(node.input).index(name) == 1:
        ok = attrs.get("transB") == 1 and not attrs.get("transA") and attrs.get("alpha", 1.0) == 1.0 \
            and attrs.get("beta", 1.0) == 1.0
        return ([], node, name) if ok else None
    if node.op_type == "Transpose" and list(attrs.get("perm", [])) == [1, 0]:
        nxt = [n for n in graph.node if node.output[0] in n.input]
        if len(nxt) == 1 and nxt[0].op_type == "MatMul" and list(nxt[0].input).index(node.output[0]) == 1:
            return [node], nxt[0], node.output[0]
    return None


def helper_value(attr):
    from onnx import helper

    return helper.get_attribute_value(attr)


def _act_nodes(w: SiteWeight, x: str, helper, numpy_helper, tag: str = "act") -> tuple[list, list, str]:
    """Clip → QuantizeLinear → DequantizeLinear on activation `x`; returns the new input name."""
    a = w.choice.act
    params = plan_params({w.site: w.record})[w.site][a.name]
    scale, zero = params["scale"], params.get("zero")
    p = f"{w.param}.{tag}"
    if zero is None:
        lo, hi, zp = -127 * scale, 127 * scale, np.array(0, dtype=np.int8)
    else:  # asymmetric: codes 0..255 around zero-point z, ONNX uint8 saturates at the same ends
        lo, hi, zp = (0 - zero) * scale, (255 - zero) * scale, np.array(int(zero), dtype=np.uint8)
    inits = [numpy_helper.from_array(np.array(v, dtype=np.float32), f"{p}.{n}")
             for n, v in (("lo", lo), ("hi", hi), ("scale", scale))]
    inits.append(numpy_helper.from_array(zp, f"{p}.zero_point"))
    nodes = [helper.make_node("Clip", [x, f"{p}.lo", f"{p}.hi"], [f"{p}.clipped"]),
             helper.make_node("QuantizeLinear", [f"{p}.clipped", f"{p}.scale", f"{p}.zero_point"], [f"{p}.q"]),
             helper.make_node("DequantizeLinear", [f"{p}.q", f"{p}.scale", f"{p}.zero_point"], [f"{p}.dq"])]
    return inits, nodes, f"{p}.dq"


def _consumer(graph, name: str):
    """The compute node reached from tensor `name` through reshapes/transposes (None if not unique)."""
    for _ in range(8):
        users = [n for n in graph.node if name in n.input]
        if len(users) != 1:
            return None
        if users[0].op_type not in _FOLLOW:
            return users[0], name
        name = users[0].output[0]
    return None


def _inputs(example) -> tuple[tuple, dict | None, list[str]]:
    """(args, kwargs, input names) for tracing: a tensor is the one input, a dict the keyword inputs."""
    if isinstance(example, dict):
        return (), dict(example), list(example)
    return (example,), None, ["input"]


def export_onnx(model: nn.Module, plan: Plan | str | Path, path: str | Path, example,
                *, opset: int = OPSET) -> ExportResult:
    """Write `model` quantized per `plan` as an ONNX file ONNX Runtime runs (atomically).

    `example`: one input batch, a tensor or a dict of keyword tensors (batch, and for a dict the
    sequence, dimensions are exported as dynamic). Long because tracing, rewriting each site's
    initializer into codes + DequantizeLinear, and the byte accounting share one graph walk."""
    onnx = need("onnx")
    need("ml_dtypes")
    from onnx import helper, numpy_helper

    plan, items = plan_weights(model, plan)
    refuse_unsupported("ONNX Runtime", items, why_not,
                       "plan with --target onnxruntime (int4/int8 weights, int8 activations, bf16)")
    with atomic_file(path) as tmp:
        was = model.training
        model.eval()
        args, kwargs, names = _inputs(example)
        axes = {n: {0: "batch", 1: "seq"} if kwargs else {0: "batch"} for n in names} | {"output": {0: "batch"}}
        try:
            with torch.no_grad(), warnings.catch_warnings():
                warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation notice
                torch.onnx.export(model, args, str(tmp), kwargs=kwargs, dynamo=False, opset_version=_TRACE_OPSET,
                                  do_constant_folding=False, input_names=names, output_names=["output"],
                                  dynamic_axes=axes)
        finally:
            model.train(was)
        m = onnx.load(str(tmp))
        g = m.graph
        inits = {t.name: t for t in g.initializer}
        missing = [w.param for w in items if w.param not in inits]
        if missing:
            raise ExportError(f"the ONNX graph has no initializer for {missing[:3]} (the exporter renamed or "
                              "folded it); export a model whose weights are plain parameters")
        factors = fold_batchnorm(g, [w for w in items if conv_qdq_ok(w)], numpy_helper)
        new_inits, new_nodes, site_bytes, kinds = _place_weights(g, items, factors, helper, numpy_helper)
        ai, an = _place_acts(g, items, set(factors), helper, numpy_helper)
        new_inits += ai
        new_nodes += an
        g.initializer.extend(new_inits)
        nodes = new_nodes + list(g.node)  # decoders first: a topological order ONNX checks
        del g.node[:]
        g.node.extend(nodes)
        _sort(g)
        del m.opset_import[:]
        m.opset_import.extend([helper.make_opsetid("", opset)]
                              + ([helper.make_opsetid(MS_DOMAIN, 1)] if "MatMulNBits" in kinds.values() else []))
        onnx.checker.check_model(m)
        onnx.save(m, str(tmp))
        total = Path(tmp).stat().st_size
    counts = {k: list(kinds.values()).count(k) for k in sorted(set(kinds.values()))}
    return ExportResult(Path(path), site_bytes, predicted_bytes(plan), total - site_bytes,
                        [f"other parameters stay float32 and the graph adds {total - site_bytes} bytes (with "
                         "MatMulNBits' padding of each row to whole blocks and its repeated per-channel scales)",
                         "site weights as " + ", ".join(f"{k} ×{v}" for k, v in counts.items())])


def _sort(g) -> None:
    """Topologically order `g.node` (the activation QDQ nodes read tensors made later in the list)."""
    have = {i.name for i in g.input} | {t.name for t in g.initializer} | {""}
    pending, out = list(g.node), []
    while pending:
        rest = []
        for n in pending:
            if all(i in have for i in n.input):
                out.append(n)
                have.update(n.output)
            else:
                rest.append(n)
        if len(rest) == len(pending):
            out += rest
            break
        pending = rest
    del g.node[:]
    g.node.extend(out)


def run_onnx(path: str | Path, x, *, threads: int | None = None) -> np.ndarray:
    """Run the exported model with ONNX Runtime on the CPU (`x`: a tensor, or a dict of keyword tensors)."""
    ort = need("onnxruntime")
    opts = ort.SessionOptions()
    if threads:
        opts.intra_op_num_threads = threads
    sess = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    feed = {k: v.numpy() for k, v in x.items()} if isinstance(x, dict) else {sess.get_inputs()[0].name: x.numpy()}
    return sess.run(None, feed)[0]
