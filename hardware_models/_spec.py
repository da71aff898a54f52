"""Accelerator spec files: TOML data where every number carries its source.

A number is written `{ value = 3.35e12, unit = "B/s", source = "where it comes from and what it says" }`;
the loader refuses a bare number anywhere in the file, so a spec cannot silently carry an
unsourced figure. Estimates say so in their source ("estimate: ..., derived from ...").

Operand classes name what a compute path consumes: `int2`..`int8`, `fp4`, `fp6`, `fp8`, `bf16`,
`fp16`, `fp32`. A path lists the classes it runs natively and those it runs after unpacking or
dequantizing them (emulated, charged on the vector units).
"""

from __future__ import annotations

import copy
import math
import re
import sys
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

from mpsearch.errors import UsageError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on Python 3.10 only
    import tomli as tomllib


class SpecError(UsageError):
    """A spec file is missing, malformed, or has a number without a source."""


@dataclass(frozen=True)
class Number:
    """A sourced quantity."""

    value: float
    source: str
    unit: str = ""

    def __str__(self) -> str:
        return f"{self.value:g} {self.unit}".strip()


@dataclass(frozen=True)
class ComputePath:
    """One way the target multiplies matrices (a tensor-core mode, an NPU MAC array, a SIMD ISA)."""

    name: str
    peak: Number  # op/s, 2 ops per MAC, dense
    efficiency: Number  # fraction of peak reached by native kernels on large problems
    dequant_efficiency: Number  # the same for kernels that unpack an emulated operand
    out_bits: Number  # bits of each output element the kernel writes
    mac_energy: Number  # J per MAC
    # optional per-path overrides of the target-wide factors (what calibration fits per kernel family);
    # keys are "memory_efficiency", "launch" and their "dequant_" variants
    overrides: dict[str, Number] = field(default_factory=dict, compare=False)
    weights: tuple[str, ...] = ()
    acts: tuple[str, ...] = ()
    emulated_weights: tuple[str, ...] = ()
    emulated_acts: tuple[str, ...] = ()
    unit: str = ""  # which hardware block runs it (for `show`)
    ops: tuple[str, ...] = ()  # the layer kinds it serves (`linear`, `conv`, `embedding`); empty: all

    def takes(self, weight: str, act: str, op: str = "linear") -> tuple[bool, bool] | None:
        """(weight emulated, act emulated) if this path can run the pair on layer kind `op`, else None.

        `ops` lets a runtime route by layer kind: ONNX Runtime runs a weight-only int4 Linear as
        MatMulNBits but a weight-only int4 convolution as a float Conv on weights decoded at load."""
        if self.ops and op not in self.ops:
            return None
        if weight in self.weights:
            we = False
        elif weight in self.emulated_weights:
            we = True
        else:
            return None
        if act in self.acts:
            return we, False
        if act in self.emulated_acts:
            return we, True
        return None


@dataclass(frozen=True)
class Spec:
    name: str
    title: str
    kind: str
    summary: str
    sources: dict[str, str]
    bandwidth: Number  # main memory, B/s
    memory_efficiency: Number  # fraction of `bandwidth` reached by streaming kernels
    on_chip: Number  # B of on-chip memory (L2 / L3 / SRAM)
    launch: Number  # s of fixed cost per kernel / per layer invocation
    vector_rate: Number  # op/s of the units that unpack, dequantize and rescale
    dequant_ops: Number  # vector ops per unpacked element
    dequant_tile_m: Number  # rows of activations served by one unpack of the weights
    vector_op_energy: Number  # J per vector op
    dram_energy: Number  # J per byte from main memory
    paths: dict[str, ComputePath]
    on_chip_bandwidth: Number | None = None  # B/s for activations that stay on chip (MCU SRAM)
    on_chip_energy: Number | None = None  # J per byte of on-chip traffic
    capacity: Number | None = None
    sharpness: Number | None = None  # roofline blend exponent p (None: exact max)
    default_formats: tuple[str, ...] = ()  # the candidates `plan` uses on this target without --formats
    raw: dict = field(default_factory=dict, repr=False, compare=False)
    origin: str = ""

    def numbers(self) -> list[tuple[str, Number]]:
        """Every sourced number in the file, with its dotted key (what `show` prints)."""
        out: list[tuple[str, Number]] = []

        def walk(node, key):
            if isinstance(node, dict):
                if "value" in node:
                    out.append((key, _number(node, key, self.name)))
                    return
                for k, v in node.items():
                    walk(v, f"{key}.{k}" if key else k)

        walk(self.raw, "")
        return out


_NUMBER_KEYS = {"value", "source", "unit"}


def _check_sourced(node, key: str, name: str) -> None:
    """Every int/float must be the `value` of a table that also has a non-empty `source`."""
    if isinstance(node, bool) or isinstance(node, str):
        return
    if isinstance(node, (int, float)):
        raise SpecError(
            f"spec {name!r}: the number at {key or 'top level'} has no source; "
            f'write it as {{ value = {node}, source = "..." }}'
        )
    if isinstance(node, list):
        for i, v in enumerate(node):
            if not isinstance(v, str):
                raise SpecError(f"spec {name!r}: {key}[{i}] must be a string (operand class or note)")
        return
    if isinstance(node, dict):
        if "value" in node:
            _number(node, key, name)
            return
        for k, v in node.items():
            _check_sourced(v, f"{key}.{k}" if key else k, name)


def _number(node: dict, key: str, name: str) -> Number:
    extra = set(node) - _NUMBER_KEYS
    src = node.get("source")
    v = node.get("value")
    if (
        extra
        or not isinstance(src, str)
        or not src.strip()
        or isinstance(v, bool)
        or not isinstance(v, (int, float))
        or not math.isfinite(v)
    ):
        raise SpecError(
            f'spec {name!r}: {key} must be {{ value = <finite number>, unit = "...", '
            f'source = "..." }} (got {node!r})'
        )
    return Number(float(v), src.strip(), str(node.get("unit", "")))


_OVERRIDES = ("memory_efficiency", "launch", "dequant_memory_efficiency", "dequant_launch")
_CLASS = re.compile(r"(int[2-8]|fp4|fp6|fp8|bf16|fp16|fp32)")


def _classes(obj: dict, key: str, where: str, name: str) -> tuple[str, ...]:
    vals = tuple(obj.get(key, ()))
    for v in vals:
        if not _CLASS.fullmatch(v):
            raise SpecError(
                f"spec {name!r}: {where}.{key} has unknown operand class {v!r}; "
                "use int2..int8, fp4, fp6, fp8, bf16, fp16 or fp32"
            )
    return vals


_OPS = ("linear", "conv", "embedding")


def _ops(p: dict, where: str, name: str) -> tuple[str, ...]:
    ops = tuple(p.get("ops", ()))
    bad = [o for o in ops if o not in _OPS]
    if bad:
        raise SpecError(f"spec {name!r}: {where}.ops has unknown layer kind {bad[0]!r}; use {', '.join(_OPS)}")
    return ops


def parse_spec(raw: dict, origin: str = "") -> Spec:
    """Validate a parsed TOML document and build the `Spec` (raises `SpecError` naming the fix)."""
    name = str(raw.get("name") or Path(origin).stem or "?")
    _check_sourced(raw, "", name)

    def table(key: str) -> dict:
        t = raw.get(key)
        if not isinstance(t, dict):
            raise SpecError(f"spec {name!r} has no [{key}] table")
        return t

    def num(t: dict, key: str, where: str, required: bool = True) -> Number | None:
        if key not in t:
            if required:
                raise SpecError(f"spec {name!r} lacks {where}.{key} (a sourced number)")
            return None
        return _number(t[key], f"{where}.{key}", name)

    mem, ovh, vec, en = table("memory"), table("overhead"), table("vector"), table("energy")
    paths = {}
    for pname, p in table("paths").items():
        where = f"paths.{pname}"
        eff = num(p, "efficiency", where)
        paths[pname] = ComputePath(
            name=pname,
            peak=num(p, "peak", where),
            efficiency=eff,
            dequant_efficiency=num(p, "dequant_efficiency", where, required=False) or eff,
            out_bits=num(p, "out_bits", where),
            mac_energy=num(p, "mac_energy", where),
            weights=_classes(p, "weights", where, name),
            acts=_classes(p, "acts", where, name),
            emulated_weights=_classes(p, "emulated_weights", where, name),
            emulated_acts=_classes(p, "emulated_acts", where, name),
            unit=str(p.get("unit", "")),
            ops=_ops(p, where, name),
            overrides={k: num(p, k, where) for k in _OVERRIDES if k in p},
        )
    if not paths:
        raise SpecError(f"spec {name!r} has no compute path under [paths]")
    for n in (p.peak for p in paths.values()):
        if n.value <= 0:
            raise SpecError(f"spec {name!r}: every path's peak must be positive")
    return Spec(
        name=name,
        title=str(raw.get("title", name)),
        kind=str(raw.get("kind", "")),
        summary=str(raw.get("summary", "")),
        sources=dict(raw.get("sources", {})),
        default_formats=tuple(str(f) for f in raw.get("default_formats", ())),
        bandwidth=num(mem, "bandwidth", "memory"),
        memory_efficiency=num(mem, "efficiency", "memory"),
        on_chip=num(mem, "on_chip", "memory"),
        capacity=num(mem, "capacity", "memory", False),
        on_chip_bandwidth=num(mem, "on_chip_bandwidth", "memory", False),
        launch=num(ovh, "launch", "overhead"),
        sharpness=num(ovh, "sharpness", "overhead", False),
        vector_rate=num(vec, "rate", "vector"),
        dequant_ops=num(vec, "dequant_ops", "vector"),
        dequant_tile_m=num(vec, "tile_m", "vector"),
        vector_op_energy=num(vec, "op_energy", "vector"),
        dram_energy=num(en, "dram_byte", "energy"),
        on_chip_energy=num(en, "on_chip_byte", "energy", False),
        paths=paths,
        raw=raw,
        origin=origin,
    )


def load_spec(path: str | Path) -> Spec:
    p = Path(path)
    if not p.is_file():
        raise SpecError(
            f"spec file {str(p)!r} does not exist; see `mpsearch hardware list` for the bundled ones"
        )
    try:
        raw = tomllib.loads(p.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as e:
        raise SpecError(f"spec file {str(p)!r} is not valid TOML ({e}); fix the syntax") from e
    return parse_spec(raw, str(p))


def bundled_spec_paths() -> list[Path]:
    """The spec files shipped in the package (`hardware_models/specs/*.toml`)."""
    root = resources.files("mpsearch.hardware_models") / "specs"
    return sorted(Path(str(f)) for f in root.iterdir() if f.name.endswith(".toml"))


def replace_numbers(spec: Spec, updates: dict[str, Number]) -> dict:
    """A copy of the spec's TOML document with the numbers at the dotted keys replaced."""
    raw = copy.deepcopy(spec.raw)
    for key, n in updates.items():
        *parents, leaf = key.split(".")
        node = raw
        for k in parents:
            node = node.setdefault(k, {})
        node[leaf] = {"value": n.value, **({"unit": n.unit} if n.unit else {}), "source": n.source}
    return raw


def _toml_value(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(float(v)) if isinstance(v, float) else str(v)
    if isinstance(v, str):
        return '"' + v.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'
    if isinstance(v, list):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{ " + ", ".join(f"{_toml_key(k)} = {_toml_value(x)}" for k, x in v.items()) + " }"
    raise TypeError(f"cannot write {type(v).__name__} to TOML")


def _toml_key(k: str) -> str:
    return k if re.fullmatch(r"[A-Za-z0-9_-]+", k) else _toml_value(k)


def dumps_toml(doc: dict) -> str:
    """Serialize a spec document (tables of scalars, string lists and sourced-number inline tables)."""
    lines: list[str] = []

    def emit(node: dict, prefix: str) -> None:
        scalars = {k: v for k, v in node.items() if not (isinstance(v, dict) and "value" not in v)}
        tables = {k: v for k, v in node.items() if isinstance(v, dict) and "value" not in v}
        if prefix and (scalars or not tables):
            lines.append(f"\n[{prefix}]")
        for k, v in scalars.items():
            lines.append(f"{_toml_key(k)} = {_toml_value(v)}")
        for k, v in tables.items():
            emit(v, f"{prefix}.{_toml_key(k)}" if prefix else _toml_key(k))

    emit(doc, "")
    return "\n".join(lines).lstrip("\n") + "\n"
