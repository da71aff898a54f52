"""Packed export: a safetensors file holding each site's weight in its plan format, really packed.

Per site weight `P` (shape (R, …), K = the rest; a MoE experts weight (E, out, in) is read as
R = E·out rows of K = in, its site's `WeightLayout`, recorded as the site's `layout`):
- `P:packed`  uint8: the element codes (row-major over (R, K)) then the zero-points, as one
  little-endian bitstream of `code_bits` per value (`formats._packing`): 4-bit codes two per byte,
  6-bit four per three bytes, … ceil((R·K + zeros)·bits / 8) bytes.
- `P:scale`   the stored scales: float16 (int / minifloat), uint8 E8M0 codes (MX), uint8 E4M3 codes (NVFP4).
- `P:tensor_scale`  float32, NVFP4 only.
The bytes of these tensors equal the plan's predicted bytes for the site (ceil(storage_bits/8)).
Parameters outside the sites are stored in 16 bits as the plan counts them (float16, or bfloat16
where float16 would overflow); buffers (e.g. BatchNorm statistics) as they are (the plan does not
count them). The safetensors header (8 bytes + JSON with the metadata below) is the only other
content. Metadata: format tag and version, the plan fingerprint, and per site its format, shape,
layout (when not `rows`), dtype and activation parameters, so `load_packed` rebuilds what `apply(model, plan)` gives.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from .activations import act_functions, insert, plan_params
from .apply import _check, plan_rounding
from .errors import PlanError
from .formats import ROWS, Encoded, get_choice, get_format, get_layout
from .formats._packing import pack_bits, unpack_bits
from .io import atomic_write
from .model import canonical_names, site_layouts
from .plan import Plan
from .quantize import _param, sixteen_bit
from .rounding import encoded

TAG = "mpsearch-packed"
VERSION = 1


@dataclass
class ExportReport:
    """Where the bytes of an exported file went."""

    path: Path
    site_bytes: int          # packed codes + zero-points + scales of every site
    predicted_site_bytes: int  # the plan's prediction for the same (sum of plan.sites[*]['bytes'])
    other_param_bytes: int   # parameters outside the sites, 16-bit
    buffer_bytes: int        # buffers (not counted by the plan)
    header_bytes: int        # safetensors header: 8-byte length + JSON (tensor index and metadata)

    @property
    def file_bytes(self) -> int:
        return self.site_bytes + self.other_param_bytes + self.buffer_bytes + self.header_bytes


def _nbytes(tensors: dict[str, torch.Tensor]) -> int:
    return sum(t.numel() * t.element_size() for t in tensors.values())


def export(model: nn.Module, plan: Plan | str | Path, path: str | Path, *, data=None, target: str | None = None,
           example: torch.Tensor | None = None):
    """Write `model`'s weights packed per `plan` to a safetensors file (atomically); `data`: the
    calibration data, for a plan whose rounding needs it (GPTQ), as in `apply`.

    `target` (`onnxruntime`, `vllm`, `tensorrt-llm`, `llama.cpp`): instead write the artifact that runtime
    loads (`mpsearch.exporters`; returns its `ExportResult`); `example` is one input batch (ONNX traces it)."""
    if target is not None:
        from .exporters import export as export_for

        return export_for(model, plan, path, target, example=example)
    if not isinstance(plan, Plan):
        plan = Plan.load(plan)
    _check(model, plan)
    with plan_rounding(plan, model, data):
        return _export(model, plan, path)


def _export(model: nn.Module, plan: Plan, path: str | Path) -> ExportReport:
    from safetensors.torch import save_file

    tensors: dict[str, torch.Tensor] = {}
    meta: dict[str, dict] = {}
    names = {id(p): n for n, p in model.named_parameters()}
    site_params = set()
    layouts = site_layouts(model)
    for site, name in plan.assignments.items():
        p = _param(model, site)
        pname = names[id(p)]
        site_params.add(pname)
        fmt = get_choice(name).weight
        layout = layouts.get(site, ROWS)
        enc = encoded(p, fmt, layout)  # the plan's rounding (mpsearch.rounding), exactly as `apply` rounds
        parts = [enc.codes.reshape(-1)] + ([] if enc.zeros is None else [enc.zeros.reshape(-1)])
        tensors[f"{pname}:packed"] = pack_bits(torch.cat(parts), enc.code_bits)
        for key, t in enc.scales.items():
            tensors[f"{pname}:{key}"] = t.detach().cpu().contiguous()
        acts = {k: v for k, v in plan.sites.get(site, {}).items() if k.startswith("act_")}
        meta[pname] = {"site": site, "format": fmt.name, "shape": list(p.shape), "code_bits": enc.code_bits,
                       "codes": enc.codes.numel(), "zeros": sum(t.numel() for t in parts[1:]), **acts,
                       **({} if layout == ROWS else {"layout": layout.name})}
    site_bytes = _nbytes(tensors)
    other = {n: sixteen_bit(p).cpu().contiguous() for n, p in model.named_parameters() if n not in site_params}
    buffers = {n: b.detach().cpu().clone().contiguous() for n, b in model.named_buffers()}
    tensors |= other | buffers
    metadata = {"format": TAG, "version": str(VERSION), "fingerprint": plan.fingerprint,
                "sites": json.dumps(meta), "parameters": json.dumps(sorted(other))}
    out = atomic_write(path, lambda tmp: save_file(tensors, tmp, metadata=metadata))
    nbytes = {k: _nbytes(d) for k, d in (("o", other), ("b", buffers))}
    predicted = int(sum(r["bytes"] for r in plan.sites.values()))
    header = out.stat().st_size - site_bytes - nbytes["o"] - nbytes["b"]
    return ExportReport(out, site_bytes, predicted, nbytes["o"], nbytes["b"], header)


def read_metadata(path: str | Path) -> dict:
    from safetensors import safe_open

    p = Path(path)
    if not p.is_file():
        raise PlanError(f"packed file {str(p)!r} does not exist; write one with `mpsearch export`")
    try:
        with safe_open(str(p), framework="pt") as f:
            meta = f.metadata() or {}
    except Exception as e:  # noqa: BLE001 - any decoder failure means it is not a packed file
        raise PlanError(f"{str(p)!r} is not a safetensors file ({type(e).__name__}); "
                        "write it with `mpsearch export`") from e
    if meta.get("format") != TAG or int(meta.get("version", 0)) > VERSION:
        raise PlanError(f"{str(p)!r} is not an mpsearch packed file of version ≤ {VERSION}; re-export it")
    return meta


def decode_site(f, pname: str, info: dict) -> torch.Tensor:
    """Decode one site's weight (float32) from an open safetensors file."""
    fmt = get_format(info["format"])
    shape = tuple(info["shape"])
    layout = get_layout(info.get("layout"))  # files without one were written in the `rows` layout
    stream = unpack_bits(f.get_tensor(f"{pname}:packed"), info["code_bits"], info["codes"] + info["zeros"])
    matrix = layout.matrix_shape(shape)
    rows = matrix[0] if len(matrix) >= 2 else 1
    codes = stream[: info["codes"]].reshape(rows, -1) if info["codes"] else stream[:0].reshape(rows, 0)
    zeros = stream[info["codes"]:] if info["zeros"] else None
    scales = {k.split(":", 1)[1]: f.get_tensor(k) for k in f.keys() if k.startswith(f"{pname}:")
              and k != f"{pname}:packed"}
    from .rounding.awq import decode

    return decode(fmt, Encoded(codes, info["code_bits"], scales, zeros), shape, layout)  # AWQ's input scale too


def load_packed(path: str | Path, model: nn.Module) -> nn.Module:
    """Decode a packed file into `model` in place (site weights, other parameters, buffers) and install
    the activation fake-quantization it records: the result computes what `apply(model, plan)` does,
    up to the 16-bit rounding of parameters outside the sites. Returns `model`."""
    from safetensors import safe_open

    meta = read_metadata(path)
    sites = json.loads(meta["sites"])
    names = canonical_names(model)  # a tied weight is one tensor, under its canonical name
    params = dict(model.named_parameters())
    at_sites = {names.get(n, n) for n in sites}
    others = [n for n in json.loads(meta["parameters"]) if names.get(n, n) not in at_sites]  # never over a site
    missing = [n for n in [*sites, *others] if names.get(n) not in params]
    if missing:
        raise PlanError(f"the packed file has parameter {missing[0]!r} that this model lacks; "
                        "pass the model the file was exported from")
    with torch.no_grad(), safe_open(str(path), framework="pt") as f:
        for pname, info in sites.items():
            params[names[pname]].copy_(decode_site(f, pname, info))
        for n in others:
            params[names[n]].copy_(f.get_tensor(n))
        for n, b in model.named_buffers():
            if n in f.keys():
                b.copy_(f.get_tensor(n))
    assignments = {i["site"]: i["format"] + (f":{i['act_format']}" if i.get("act_format") else "")
                   for i in sites.values()}
    insert(model, act_functions(model, assignments, plan_params({i["site"]: i for i in sites.values()})))
    return model

