"""The ONNX node patterns a site's weight becomes, chosen by what ONNX Runtime's CPU kernels run fast.

- `com.microsoft.MatMulNBits` (weight-only int4 on a Linear; the kernel takes 8 bits but runs them slowly):
  the packed codes stay packed and MLAS's blockwise kernels read them directly. Layout (onnxruntime
  docs/ContribOperators.md, MatMulNBits): B is uint8 (N, n_blocks, block_size·bits/8), element 2i of a
  block in the low nibble for 4 bits; scales (N·n_blocks) in A's type; zero_points uint8
  (N, ceil(n_blocks·bits/8)) packed the same way, or absent for the default zero-point
  2^(bits-1) (symmetric codes are stored offset by it).
  `block_size` must be a power of two ≥ 16: a per-channel scale is repeated over the blocks of a row,
  or the row padded to one block, whichever stores fewer bytes.
- folded (`Cast(codes) [− zero] × scale`): ONNX Runtime's constant folding evaluates it once at session
  start (it never folds `DequantizeLinear`, which it keeps for QDQ fusion), so a Conv keeps a constant
  float weight and runs its NCHWc kernel; the file still holds the codes. Used where no integer kernel
  exists: weight-only convolutions, int8 weight-only Linears, embeddings, per-tensor scales.
- `DequantizeLinear` weights (int8-activation sites): the QDQ patterns ORT fuses into integer kernels —
  a bias-free Linear (`MatMul(x, Transpose(W))`) runs as MatMulIntegerToFloat; one with a bias stays a
  float Gemm on per-run dequantized operands (ORT fuses a QDQ Gemm only when its output is requantized,
  and folds a MatMul + Add back into that Gemm); an asymmetric-activation Conv becomes QLinearConv when
  its output is requantized for the next layer (`conv_dq_nodes`, `fold_batchnorm`).
Scales are stored as FP16 with a `Cast` to float (folded too), so the decoded values are those of
`Format.encode`, exact in float32.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from ._common import SiteWeight

MS_DOMAIN = "com.microsoft"


def int_dtype(bits: int, asym: bool):
    import ml_dtypes

    return {(4, False): ml_dtypes.int4, (4, True): ml_dtypes.uint4, (8, False): np.int8, (8, True): np.uint8}[
        (bits, asym)]


def site_codes(w: SiteWeight) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """(codes (R, K) int64 — signed for symmetric formats —, FP16 scales (R, n_groups), zero-points or None)."""
    f = w.choice.weight
    enc = f.encode(w.weight)
    codes = enc.codes.to(torch.int64).numpy()
    if not f.asym:  # stored as two's complement b-bit fields
        codes = np.where(codes >= 2 ** (f.bits - 1), codes - 2**f.bits, codes)
    rows = codes.shape[0]
    scales = enc.scales["scale"].numpy().astype(np.float16).reshape(rows if f.gran.kind != "pt" else 1, -1)
    zeros = None if enc.zeros is None else enc.zeros.numpy().astype(np.int64).reshape(scales.shape)
    return codes, scales, zeros


def nbits_block(w: SiteWeight) -> int | None:
    """MatMulNBits block size for a weight-only int4 site (None: the format does not map onto it).

    8-bit weights stay off MatMulNBits: ORT 1.32's CPU kernel for bits=8 dequantizes on every call and
    measured 4-25x slower than the float Gemm on weights folded at load (benchmarks/runtime_latency.py)."""
    f = w.choice.weight
    if w.choice.act is not None or f.family != "int" or f.bits != 4 or f.gran.kind == "pt":
        return None
    k = w.weight[0].numel()
    if f.gran.kind == "g":
        g = f.gran.group
        return g if g >= 16 and g & (g - 1) == 0 else None
    best = None
    for b in (2**i for i in range(4, max(5, math.ceil(math.log2(k)) + 1))):
        nb = math.ceil(k / b)
        extra = (nb * b - k) * f.bits / 8 + (nb - 1) * (2 + (1 if f.asym else 0))
        if best is None or extra < best[0]:
            best = (extra, b)
    return best[1]


def _pack(vals: np.ndarray, bits: int) -> np.ndarray:
    """Unsigned values (..., L) into bytes, little nibble first for 4 bits (L padded to even)."""
    if bits == 8:
        return vals.astype(np.uint8)
    if vals.shape[-1] % 2:
        vals = np.concatenate([vals, np.zeros(vals.shape[:-1] + (1,), vals.dtype)], -1)
    return (vals[..., 0::2] | (vals[..., 1::2] << 4)).astype(np.uint8)


def pack_nbits(codes: np.ndarray, scales: np.ndarray, zeros: np.ndarray | None, bits: int, block: int,
               group: int | None) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """(B, FP16 scales (N·n_blocks), packed zero-points or None) in MatMulNBits' layout.

    `group`: the format's scale group along K (None: one scale per row, repeated over its blocks)."""
    n, k = codes.shape
    nb = math.ceil(k / block)
    offset = 0 if zeros is not None else 2 ** (bits - 1)
    padded = np.full((n, nb * block), offset if zeros is None else 0, dtype=np.int64)
    padded[:, :k] = codes + offset
    b = _pack(padded.reshape(n, nb, block), bits)
    reps = 1 if group else nb
    s = np.repeat(scales, reps, axis=1)[:, :nb]
    z = None if zeros is None else _pack(np.repeat(zeros, reps, axis=1)[:, :nb], bits).reshape(-1)
    return b, s.reshape(-1), z


def folded_nodes(w: SiteWeight, helper, numpy_helper) -> tuple[list, list]:
    """Initializers and nodes that compute the decoded weight as `Cast(codes) [- zero] * scale` under
    the parameter's name (ORT folds them into a float initializer at session start)."""
    f, p, shape = w.choice.weight, w.param, list(w.weight.shape)
    codes, scales, zeros = site_codes(w)
    rows, k = codes.shape
    ng = scales.shape[1]
    g = math.ceil(k / ng) if f.gran.kind == "g" else k
    dt = int_dtype(f.bits, f.asym)
    q = numpy_helper.from_array(codes.astype(dt), f"{p}.codes")
    s = numpy_helper.from_array(scales.reshape(-1, ng, 1) if scales.shape[0] > 1 else scales.reshape(1, 1, 1),
                                f"{p}.scale")
    inits = [q, s]
    nodes = [helper.make_node("Cast", [q.name], [f"{p}.codes_f32"], to=1),
             helper.make_node("Cast", [s.name], [f"{p}.scale_f32"], to=1)]
    x = f"{p}.codes_f32"
    consts = {"grouped": np.array([rows, ng, g], np.int64), "flat": np.array([rows, ng * g], np.int64),
              "shape": np.array(shape, np.int64)}
    if ng * g != k:
        consts |= {"pads": np.array([0, 0, 0, ng * g - k], np.int64), "k": np.array([k], np.int64),
                   "zero0": np.array([0], np.int64), "axis1": np.array([1], np.int64)}
    inits += [numpy_helper.from_array(v, f"{p}.{n}") for n, v in consts.items()]
    if ng * g != k:
        nodes.append(helper.make_node("Pad", [x, f"{p}.pads"], [f"{p}.padded"]))
        x = f"{p}.padded"
    nodes.append(helper.make_node("Reshape", [x, f"{p}.grouped"], [f"{p}.grouped_codes"]))
    x = f"{p}.grouped_codes"
    if zeros is not None:
        z = numpy_helper.from_array(zeros.astype(dt).reshape(s.dims), f"{p}.zero_point")
        inits.append(z)
        nodes += [helper.make_node("Cast", [z.name], [f"{p}.zero_f32"], to=1),
                  helper.make_node("Sub", [x, f"{p}.zero_f32"], [f"{p}.centred"])]
        x = f"{p}.centred"
    nodes += [helper.make_node("Mul", [x, f"{p}.scale_f32"], [f"{p}.scaled"]),
              helper.make_node("Reshape", [f"{p}.scaled", f"{p}.flat"], [f"{p}.flat_w"])]
    x = f"{p}.flat_w"
    if ng * g != k:
        nodes.append(helper.make_node("Slice", [x, f"{p}.zero0", f"{p}.k", f"{p}.axis1"], [f"{p}.sliced"]))
        x = f"{p}.sliced"
    nodes.append(helper.make_node("Reshape", [x, f"{p}.shape"], [p]))
    site = [q, s] + ([inits[-1]] if zeros is not None else [])
    return inits, nodes, sum(len(t.raw_data) for t in site)


def nbits_node(w: SiteWeight, block: int, a: str, bias: str, out: str, helper, numpy_helper) -> tuple[list, list, int]:
    """Initializers, nodes and site bytes of `out = a @ W.T (+ bias)` as one MatMulNBits."""
    f, p = w.choice.weight, w.param
    codes, scales, zeros = site_codes(w)
    n, k = codes.shape
    b, s, z = pack_nbits(codes, scales, zeros, f.bits, block, f.gran.group if f.gran.kind == "g" else None)
    inits = [numpy_helper.from_array(b, f"{p}.nbits"), numpy_helper.from_array(s, f"{p}.scale")]
    if z is not None:
        inits.append(numpy_helper.from_array(z, f"{p}.zero_point"))
    ins = [a, f"{p}.nbits", f"{p}.scale_f32", f"{p}.zero_point" if z is not None else "", "", bias]
    while not ins[-1]:
        ins.pop()
    nodes = [helper.make_node("Cast", [f"{p}.scale"], [f"{p}.scale_f32"], to=1),
             helper.make_node("MatMulNBits", ins, [out], domain=MS_DOMAIN, K=k, N=n, bits=f.bits, block_size=block)]
    # site bytes as the plan counts them (codes, one scale per group); MatMulNBits' padding to whole blocks and
    # repeated per-channel scales are reported with the other bytes
    zbytes = 0 if zeros is None else math.ceil(zeros.size * f.bits / 8)
    exact = math.ceil(n * k * f.bits / 8) + scales.size * 2 + zbytes
    return inits, nodes, min(exact, sum(len(t.raw_data) for t in inits))


def conv_qdq_ok(w: SiteWeight, fused: bool = True) -> bool:
    """An asymmetric-int8-activation convolution with symmetric int4/int8 weights, one scale per tensor or
    channel: the pattern ORT fuses into QLinearConv (weight zero-point 0; the producer's ReLU is dropped only
    before a zero-point-0 uint8 Q, i.e. an asymmetric grid). `fused=False`: any int8 activation (the same
    weight pattern, run as DequantizeLinear + float Conv; a folded float weight would be requantized per
    tensor by ORT's weight quantization, off the plan's grid)."""
    f = w.choice.weight
    act = w.choice.act
    return (act is not None and (getattr(act, "asym", False) or not fused) and w.weight.dim() > 2
            and f.family == "int" and f.bits in (4, 8) and not f.asym and f.gran.kind in ("pt", "pc"))


def fold_batchnorm(g, items: list[SiteWeight], numpy_helper) -> dict[str, np.ndarray]:
    """Fold each `Conv(W) → BatchNormalization` of these sites into the Conv's bias and a per-channel
    factor on W's scales (returned per parameter), as ORT does for float weights: its QDQ fusion needs the
    Conv's output to reach the next QuantizeLinear. Sites without such a BatchNormalization get factor 1."""
    inits = {t.name: t for t in g.initializer}
    out = {}
    for w in items:
        conv = next((n for n in g.node if w.param in n.input and n.op_type == "Conv"), None)
        users = [] if conv is None else [n for n in g.node if conv.output[0] in n.input]
        rows = w.weight.shape[0]
        if len(users) != 1 or users[0].op_type != "BatchNormalization" or not all(
                i in inits for i in users[0].input[1:5]):
            out[w.param] = np.ones(rows, np.float32)
            continue
        bn = users[0]
        gamma, beta, mean, var = (numpy_helper.to_array(inits[i]).astype(np.float64) for i in bn.input[1:5])
        eps = next((a.f for a in bn.attribute if a.name == "epsilon"), 1e-5)
        f = gamma / np.sqrt(var + eps)
        b = numpy_helper.to_array(inits[conv.input[2]]).astype(np.float64) if len(conv.input) > 2 else 0.0
        bias = numpy_helper.from_array(((b - mean) * f + beta).astype(np.float32), f"{w.param}.bn_bias")
        g.initializer.append(bias)
        if len(conv.input) > 2:
            conv.input[2] = bias.name
        else:
            conv.input.append(bias.name)
        conv.output[0] = bn.output[0]
        g.node.remove(bn)
        out[w.param] = f.astype(np.float32)
    used = {i for n in g.node for i in n.input}
    for t in list(g.initializer):
        if t.name not in used and t.name not in {w.param for w in items}:
            g.initializer.remove(t)
    return out


def conv_dq_nodes(w: SiteWeight, factor: np.ndarray, helper, numpy_helper) -> tuple[list, list, int]:
    """`DequantizeLinear(codes, scale × factor, axis=0)` straight into the Conv (codes in the weight's own
    shape, so nothing stands between them); 4-bit codes are widened to int8 by a folded Cast."""
    f, p, shape = w.choice.weight, w.param, tuple(w.weight.shape)
    codes, scales, _ = site_codes(w)
    q = numpy_helper.from_array(codes.reshape(shape).astype(int_dtype(f.bits, False)), f"{p}.codes")
    s = numpy_helper.from_array(scales.reshape(-1), f"{p}.scale")
    fac = numpy_helper.from_array(factor.astype(np.float32), f"{p}.bn_factor")
    nodes = [helper.make_node("Cast", [s.name], [f"{p}.scale_f32"], to=1),
             helper.make_node("Mul", [f"{p}.scale_f32", fac.name], [f"{p}.scale_eff"])]
    codes_in = q.name
    if f.bits == 4:
        nodes.append(helper.make_node("Cast", [q.name], [f"{p}.codes8"], to=3))
        codes_in = f"{p}.codes8"
    zp = numpy_helper.from_array(np.zeros(shape[0], np.int8), f"{p}.zero_point")
    nodes.append(helper.make_node("DequantizeLinear", [codes_in, f"{p}.scale_eff", zp.name], [p], axis=0))
    return [q, s, fac, zp], nodes, len(q.raw_data) + len(s.raw_data)
