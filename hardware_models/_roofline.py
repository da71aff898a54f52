"""The analytical per-GEMM model: route a choice to a compute path, then a roofline with overheads.

    latency = launch + blend(t_compute, t_memory)
    t_compute = 2·MACs / (peak · η_path) + vector ops / vector_rate
    t_memory  = bytes moved / (bandwidth · η_mem)

η_path, η_mem and launch are per route key (a path, or a path whose kernel unpacks an operand), with
target-wide defaults for η_mem and launch: different kernel families reach different fractions of
the same hardware, which is what calibration fits.

`blend` is the exact roofline max, or the p-norm (t_c^p + t_m^p)^(1/p) when the spec gives a
sharpness p (real kernels lose some overlap near the ridge point; calibration fits p). Bytes count
weights at their storage bits (scales included, `Format.storage_bits`), activations at theirs and
outputs at the path's output width. Vector ops are the unpacking of emulated operands (weights are
unpacked once per `tile_m` rows of activations, as fused dequantizing kernels do) and, for W+A
quantized choices with K-grouped scales, one rescale per partial sum: M·N·ceil(K/G).
Costs are split into raw components so calibration refits the efficiencies without recomputing them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from mpsearch.errors import UsageError
from mpsearch.formats import Choice, Format, get_choice

from ._spec import ComputePath, Spec


class UnsupportedFormat(UsageError):
    """The target has no compute path (native or emulated) for a choice."""


def operand_class(fmt: Format | None) -> str:
    """What a compute path sees of a format: `int4`, `fp8`, `bf16`, ... (None: 16-bit activations)."""
    if fmt is None:
        return "bf16"
    bits = int(math.ceil(fmt.element_bits))
    fam = fmt.family
    if fam == "keep":
        return fmt.name
    if fam == "int" or (fam == "mx" and fmt.name.startswith("mxint")):
        return f"int{bits}"
    if fam in ("minifloat", "mx", "nvfp4"):
        return f"fp{bits}"
    return f"{fam}{bits}"


def k_group(fmt: Format | None) -> int:
    """Scale-group length along the reduction dimension (0: per-tensor or per-channel scales)."""
    if fmt is None:
        return 0
    for attr in ("group", "block_size", "block"):
        g = getattr(fmt, attr, 0)
        if isinstance(g, int) and g > 0:
            return g
    return {"mx": 32, "nvfp4": 16}.get(fmt.family, 0)


@dataclass(frozen=True)
class Route:
    """How one choice runs on a target."""

    path: ComputePath
    weight_emulated: bool
    act_emulated: bool

    @property
    def emulated(self) -> bool:
        return self.weight_emulated or self.act_emulated

    @property
    def key(self) -> str:
        """The efficiency this route uses: `int8` (native kernels) or `int8+dequant`."""
        return self.path.name + ("+dequant" if self.emulated else "")


def choice_classes(choice: Choice) -> tuple[str, str]:
    """(weight class, activation class); 16-bit activations match a 16-bit weight's type."""
    w = operand_class(choice.weight)
    if choice.act is None:
        return w, (w if w in ("bf16", "fp16") else "bf16")
    return w, operand_class(choice.act)


def route(spec: Spec, choice: Choice, op: str = "linear") -> Route | None:
    """The fastest path that runs `choice` on layer kind `op` (native operands preferred on ties); None if none does."""
    w, a = choice_classes(choice)
    best = None
    for p in spec.paths.values():
        em = p.takes(w, a, op)
        if em is None:
            continue
        rank = (p.peak.value * (p.dequant_efficiency if any(em) else p.efficiency).value, -sum(em))
        if best is None or rank > best[0]:
            best = (rank, Route(p, *em))
    return None if best is None else best[1]


def why_unsupported(spec: Spec, choice: Choice) -> str | None:
    if any(route(spec, choice, op) is not None for op in ("linear", "conv", "embedding")):
        return None
    w, a = choice_classes(choice)
    paths = ", ".join(spec.paths)
    return (
        f"{choice.name} cannot run on {spec.name}: no compute path takes {w} weights with {a} "
        f"activations (paths: {paths})"
    )


@dataclass(frozen=True)
class Gemm:
    """One matrix product: (m × k) activations times (k × n) weights, as GEMM or implicit-GEMM conv.

    `in_elems` / `out_elems` count the activation elements read and written (for a conv they differ
    from m·k, since the input is not im2col-expanded in memory); `weight_shape` is the stored
    weight's shape (defaults to (n, k)). `gather` marks an embedding lookup: m rows of the weight
    are read, nothing is multiplied.
    """

    m: int
    n: int
    k: int
    in_elems: int | None = None
    out_elems: int | None = None
    weight_shape: tuple[int, ...] | None = None
    gather: bool = False
    kind: str = ""  # `linear`, `conv` or `embedding`; empty: from `gather` and the weight's rank

    @property
    def op(self) -> str:
        """The layer kind, which a spec's paths may route by."""
        if self.kind:
            return self.kind
        if self.gather:
            return "embedding"
        return "conv" if self.weight_shape is not None and len(self.weight_shape) > 2 else "linear"

    @property
    def macs(self) -> int:
        return 0 if self.gather else self.m * self.n * self.k


@dataclass(frozen=True)
class Components:
    """Raw cost terms before efficiencies: seconds at peak, bytes, ops, joules."""

    key: str
    t_mma: float  # 2·MACs / peak
    t_vector: float  # vector ops / vector rate
    weight_bytes: float
    act_bytes: float
    act_on_chip: bool
    macs: float
    vector_ops: float
    bops: float
    energy: float


@dataclass(frozen=True)
class Efficiencies:
    """The fitted factors, per route key (`int8`, `bf16+dequant`, ...): fraction of peak compute and of
    peak bandwidth reached, and fixed time per kernel; plus the roofline sharpness."""

    compute: dict[str, float]
    memory: dict[str, float]
    launch: dict[str, float]
    sharpness: float | None = None

    @classmethod
    def of(cls, spec: Spec) -> Efficiencies:
        comp, mem, launch = {}, {}, {}
        for p in spec.paths.values():
            o = p.overrides
            for key, pre, eff in (
                (p.name, "", p.efficiency),
                (p.name + "+dequant", "dequant_", p.dequant_efficiency),
            ):
                comp[key] = eff.value
                mem[key] = o.get(
                    pre + "memory_efficiency", o.get("memory_efficiency", spec.memory_efficiency)
                ).value
                launch[key] = o.get(pre + "launch", o.get("launch", spec.launch)).value
        return cls(comp, mem, launch, spec.sharpness.value if spec.sharpness else None)


def blend(tc: float, tm: float, p: float | None) -> float:
    if p is None or math.isinf(p):
        return max(tc, tm)
    hi = max(tc, tm)
    if hi <= 0:
        return 0.0
    return hi * ((tc / hi) ** p + (tm / hi) ** p) ** (1.0 / p)


def memory_time(spec: Spec, c: Components, eta_mem: float) -> float:
    bw = spec.bandwidth.value * eta_mem
    if c.act_on_chip and spec.on_chip_bandwidth is not None:
        # weights stream from main memory while activations stay in on-chip SRAM on another port
        return max(c.weight_bytes / bw, c.act_bytes / (spec.on_chip_bandwidth.value * eta_mem))
    return (c.weight_bytes + c.act_bytes) / bw


def latency(spec: Spec, c: Components, eff: Efficiencies) -> float:
    tc = c.t_mma / eff.compute[c.key] + c.t_vector
    return eff.launch[c.key] + blend(tc, memory_time(spec, c, eff.memory[c.key]), eff.sharpness)


def components(spec: Spec, g: Gemm, choice: Choice | str) -> Components:
    """Raw cost terms of one GEMM under `choice` (raises `UnsupportedFormat`)."""
    choice = get_choice(choice)
    r = route(spec, choice, g.op)
    if r is None:
        article = "an" if g.op[0] in "aeiou" else "a"
        why = why_unsupported(spec, choice) or f"{choice.name} cannot run {article} {g.op} layer on {spec.name}"
        raise UnsupportedFormat(why + "; drop it from --formats or pick another target")
    w, a = choice.weight, choice.act
    wshape = tuple(g.weight_shape or (g.n, g.k))
    in_elems = g.m * g.k if g.in_elems is None else g.in_elems
    out_elems = g.m * g.n if g.out_elems is None else g.out_elems
    weight_numel = math.prod(wshape)
    if g.gather:
        # an embedding reads m rows of the weight at its storage bits and writes them at 16 bits
        w_bytes = w.storage_bits(wshape) / 8 * min(1.0, g.m / max(wshape[0], 1))
        a_bytes = out_elems * 2.0
        vec = g.m * g.n * spec.dequant_ops.value if r.weight_emulated else 0.0
        return _finish(spec, r, g, 0.0, vec, w_bytes, a_bytes, 0.0)
    # activations are quantized per tensor (one scale for the whole input, `activations.py`), not per row
    a_bits = 16.0 if a is None else a.bits_per_element((1, max(in_elems, 1)))
    w_bytes = w.storage_bits(wshape) / 8
    a_bytes = in_elems * a_bits / 8 + out_elems * r.path.out_bits.value / 8
    vec = 0.0
    if r.weight_emulated:
        vec += weight_numel * spec.dequant_ops.value * math.ceil(g.m / spec.dequant_tile_m.value)
    if r.act_emulated:
        vec += in_elems * spec.dequant_ops.value
    if a is not None:
        grp = max(k_group(w), k_group(a))
        if grp:
            vec += g.m * g.n * math.ceil(g.k / grp)
    bops = g.macs * w.element_bits * choice.act_bits
    return _finish(spec, r, g, bops, vec, w_bytes, a_bytes, g.macs)


def _finish(
    spec: Spec, r: Route, g: Gemm, bops: float, vec: float, w_bytes: float, a_bytes: float, macs: float
) -> Components:
    on_chip = spec.on_chip_bandwidth is not None and a_bytes <= spec.on_chip.value
    byte_e = spec.on_chip_energy.value if (on_chip and spec.on_chip_energy) else spec.dram_energy.value
    energy = (
        macs * r.path.mac_energy.value
        + vec * spec.vector_op_energy.value
        + w_bytes * spec.dram_energy.value
        + a_bytes * byte_e
    )
    return Components(
        key=r.key,
        t_mma=2.0 * macs / r.path.peak.value,
        t_vector=vec / spec.vector_rate.value,
        weight_bytes=w_bytes,
        act_bytes=a_bytes,
        act_on_chip=on_chip,
        macs=float(macs),
        vector_ops=vec,
        bops=float(bops),
        energy=energy,
    )


@dataclass(frozen=True)
class GemmCost:
    """The answer to one query."""

    latency: float  # s
    bytes: float  # bytes moved (weights + activations in + out)
    bops: float  # MACs × weight bits × activation bits
    energy: float  # J (dynamic: MACs, vector ops, bytes moved)
    bound: str  # "compute" | "memory" | "overhead"
    path: str  # route key, e.g. "fp8" or "bf16+dequant"

    def as_dict(self) -> dict[str, float | str]:
        return {
            "latency": self.latency,
            "bytes": self.bytes,
            "bops": self.bops,
            "energy": self.energy,
            "bound": self.bound,
            "path": self.path,
        }


def gemm_cost(spec: Spec, g: Gemm, choice: Choice | str, eff: Efficiencies | None = None) -> GemmCost:
    eff = eff or Efficiencies.of(spec)
    c = components(spec, g, choice)
    tc = c.t_mma / eff.compute[c.key] + c.t_vector
    tm = memory_time(spec, c, eff.memory[c.key])
    lat = eff.launch[c.key] + blend(tc, tm, eff.sharpness)
    bound = "overhead" if eff.launch[c.key] > max(tc, tm) else ("compute" if tc >= tm else "memory")
    return GemmCost(lat, c.weight_bytes + c.act_bytes, c.bops, c.energy, bound, c.key)
