"""Calibration data: one normalized container for every way a user can hand us inputs.

Accepted: a tensor of inputs; an `(x, y)` pair; a dict with `x` and optionally `y`; an iterable of
such batches (e.g. a DataLoader); on the CLI a `.pt` or `.npz` file holding such a dict. With labels
the default objective is the task loss; without, the KL divergence from the FP model's own outputs.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from .errors import DataError
from .model import batch_size_of, call_model


def primary_output(out) -> torch.Tensor:
    """The tensor an objective scores: the output itself, `.logits`, or the first tensor of a tuple/dict."""
    if isinstance(out, torch.Tensor):
        return out
    logits = getattr(out, "logits", None)
    if isinstance(logits, torch.Tensor):
        return logits
    if isinstance(out, dict):
        if isinstance(out.get("logits"), torch.Tensor):
            return out["logits"]
        out = list(out.values())
    if isinstance(out, (tuple, list)):
        for o in out:
            if isinstance(o, torch.Tensor):
                return o
    raise DataError(f"the model returned {type(out).__name__}, which holds no tensor to score")


def _to(x, device):
    if isinstance(x, torch.Tensor):
        return x.to(device)
    if isinstance(x, dict):
        return {k: _to(v, device) for k, v in x.items()}
    if isinstance(x, (tuple, list)):
        return type(x)(_to(v, device) for v in x)
    return x


def _slice(x, i: int, j: int):
    return _index(x, slice(i, j))


def _index(x, idx):
    """Rows `idx` (a slice or index tensor) of every tensor in x."""
    if isinstance(x, dict):
        return {k: v[idx] for k, v in x.items()}
    if isinstance(x, (tuple, list)):
        return type(x)(v[idx] for v in x)
    return x[idx]


def _join(parts: list):
    """Rows of several batches' inputs (a tensor, a tuple or a dict of them; None if absent) as one."""
    first = parts[0]
    if first is None:
        return None
    if isinstance(first, dict):
        return {k: torch.cat([p[k] for p in parts]) for k in first}
    if isinstance(first, (tuple, list)):
        return type(first)(torch.cat([p[i] for p in parts]) for i in range(len(first)))
    return torch.cat(parts)


def _tensor(v, what: str) -> torch.Tensor:
    if not isinstance(v, torch.Tensor):
        a = np.asarray(v)
        if a.dtype.kind not in "biuf":  # strings, objects, dates: torch cannot hold them
            raise DataError(f"{what} has numpy dtype {a.dtype} ({a.dtype.kind!r}); pass numbers: real-valued inputs "
                            "or integer token ids (tokenize text first)")
        v = torch.as_tensor(a)
    t = v
    if t.is_floating_point():
        return t.float()
    if t.dtype == torch.bool or not (t.dtype.is_floating_point or t.dtype.is_complex):
        return t.long()
    raise DataError(f"{what} has dtype {t.dtype}; pass real numbers or integer ids")


@dataclass
class Batch:
    x: Any
    y: torch.Tensor | None = None
    ref: torch.Tensor | None = None  # the FP model's output on x (label-free objectives)

    @property
    def size(self) -> int:
        return batch_size_of(self.x)


class CalibrationData:
    """A list of batches held in memory (calibration sets are small by design)."""

    distilled: bool = False  # ZeroQ-distilled inputs (no real data): the planner's default estimator differs

    def __init__(self, batches: list[Batch]):
        if not batches:
            raise DataError("the calibration data is empty; pass at least one sample")
        self.batches = batches

    def __iter__(self) -> Iterator[Batch]:
        return iter(self.batches)

    def __len__(self) -> int:
        return len(self.batches)

    @property
    def labelled(self) -> bool:
        return all(b.y is not None for b in self.batches)

    @property
    def num_samples(self) -> int:
        return sum(b.size for b in self.batches)

    @property
    def first_x(self):
        return self.batches[0].x

    def to(self, device) -> CalibrationData:
        return CalibrationData([Batch(_to(b.x, device), _to(b.y, device), _to(b.ref, device)) for b in self])

    def with_reference(self, model: nn.Module) -> CalibrationData:
        """Attach the model's outputs as references (done once, on the FP model)."""
        if all(b.ref is not None for b in self.batches):
            return self
        with torch.no_grad():
            return CalibrationData(
                [replace(b, ref=primary_output(call_model(model, b.x)).detach()) for b in self.batches]
            )

    def take(self, n: int) -> CalibrationData:
        """The first `n` samples."""
        out, left = [], n
        for b in self.batches:
            if left <= 0:
                break
            k = min(left, b.size)
            out.append(Batch(_slice(b.x, 0, k), None if b.y is None else b.y[:k],
                             None if b.ref is None else b.ref[:k]))
            left -= k
        return CalibrationData(out)

    def sample(self, n: int, seed: int = 0) -> CalibrationData:
        """A seeded random subset of `n` samples (all of them, unchanged, when there are no more than n):
        the first n of an ordered file (sorted by class, by date) would bias whatever is estimated on it."""
        if n >= self.num_samples:
            return self
        return self.split(n, seed)[0]

    def split(self, k: int, seed: int = 0) -> tuple[CalibrationData, CalibrationData]:
        """A seeded random partition into k samples and the rest, each in the original order."""
        perm = torch.randperm(self.num_samples, generator=torch.Generator().manual_seed(seed))
        return self._rows(perm[:k].sort().values), self._rows(perm[k:].sort().values)

    def _rows(self, rows: torch.Tensor) -> CalibrationData:
        out, start = [], 0
        for b in self.batches:
            local = rows[(rows >= start) & (rows < start + b.size)] - start
            start += b.size
            if len(local):
                out.append(Batch(_index(b.x, local), None if b.y is None else b.y[local],
                                 None if b.ref is None else b.ref[local]))
        return CalibrationData(out)

    def rebatched(self, size: int) -> CalibrationData:
        """The same samples in order, in batches of exactly `size` (the last n mod size are left out)."""
        x, y, ref = (_join([getattr(b, f) for b in self.batches]) for f in ("x", "y", "ref"))
        keep = self.num_samples - self.num_samples % size
        return CalibrationData([Batch(_slice(x, i, i + size), None if y is None else y[i:i + size],
                                      None if ref is None else ref[i:i + size]) for i in range(0, keep, size)])

    def digest(self) -> str:
        """A content hash, so cached sensitivities are keyed by the data they were computed on."""
        h = hashlib.sha256()

        def feed(v):
            if isinstance(v, torch.Tensor):
                t = v.detach().cpu().contiguous()
                h.update(f"{tuple(t.shape)}{t.dtype}".encode())
                h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
            elif isinstance(v, dict):
                for k in sorted(v):
                    h.update(str(k).encode())
                    feed(v[k])
            elif isinstance(v, (tuple, list)):
                for e in v:
                    feed(e)

        for b in self.batches:
            feed(b.x)
            feed(b.y)
        return h.hexdigest()[:16]


def _split(x, y, batch_size: int) -> list[Batch]:
    n = batch_size_of(x)
    if y is not None and int(y.shape[0]) != n:
        raise DataError(f"x has {n} samples but y has {int(y.shape[0])}; give one label per input")
    return [Batch(_slice(x, i, i + batch_size), None if y is None else y[i : i + batch_size])
            for i in range(0, n, batch_size)]


def _one(item) -> tuple[Any, torch.Tensor | None]:
    """One (x, y) from a tensor, an (x, y) pair, or a dict with x and optional y."""
    if isinstance(item, dict):
        if "x" not in item:
            raise DataError(f"data dict has keys {sorted(item)}; it needs 'x' (inputs) and optionally 'y'")
        x = item["x"]
        x = {k: _tensor(v, f"x[{k!r}]") for k, v in x.items()} if isinstance(x, dict) else _tensor(x, "x")
        y = item.get("y")
        if y is not None:
            y = _tensor(y, "y")
            if y.dim() == 2 and y.shape[1] == 1:  # column vector of labels
                y = y.reshape(-1)
        return x, y
    if isinstance(item, (tuple, list)) and len(item) == 2:
        return _one({"x": item[0], "y": item[1]})
    if isinstance(item, (torch.Tensor, np.ndarray)):
        return _tensor(item, "x"), None
    raise DataError(
        f"cannot use {type(item).__name__} as calibration data; pass a tensor, an (x, y) pair, "
        "a dict with 'x' and 'y', or an iterable of those"
    )


def _is_pair(data) -> bool:
    """An (x, y) pair, as a tuple, or as a two-item list of inputs and labels: `[x, y]` with one label
    per row and labels not shaped like the inputs (two input batches always have the same row shape)."""
    if isinstance(data, tuple):
        return len(data) == 2
    if not (isinstance(data, list) and len(data) == 2):
        return False
    x, y = data
    if not all(isinstance(v, (torch.Tensor, np.ndarray)) for v in (x, y)) or x.ndim == 0 or y.ndim == 0:
        return False
    return x.shape[0] == y.shape[0] and tuple(x.shape[1:]) != tuple(y.shape[1:])


def as_data(data, batch_size: int = 256) -> CalibrationData:
    """Normalize any accepted form of calibration data."""
    if isinstance(data, CalibrationData):
        return data
    if isinstance(data, (str, Path)):
        return as_data(load_data_file(data), batch_size)
    if isinstance(data, (torch.Tensor, np.ndarray, dict)) or _is_pair(data):
        return CalibrationData(_split(*_one(data), batch_size))
    if isinstance(data, Iterable):
        batches = [Batch(*_one(item)) for item in data]
        return CalibrationData(batches)
    raise DataError(
        f"cannot use {type(data).__name__} as calibration data; pass a tensor, an (x, y) pair, "
        "a dict with 'x' and 'y', or an iterable of batches"
    )


def load_data_file(path: str | Path) -> dict:
    """A `.pt` (loaded with weights_only=True: no code runs) or `.npz` file holding {'x', 'y'?}."""
    p = Path(path)
    if not p.is_file():
        raise DataError(f"data file {str(p)!r} does not exist; pass a .pt or .npz file holding x (and y)")
    try:
        if p.suffix == ".npz":
            with np.load(p, allow_pickle=False) as z:
                obj = {k: z[k] for k in z.files}
        else:
            obj = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - any decoder failure means a corrupt file
        raise DataError(f"cannot read data file {str(p)!r} ({type(e).__name__}); "
                        "it must be a .pt or .npz holding a dict with 'x' and optionally 'y'") from e
    if isinstance(obj, torch.Tensor):
        obj = {"x": obj}
    if not isinstance(obj, dict) or "x" not in obj:
        keys = sorted(obj) if isinstance(obj, dict) else type(obj).__name__
        raise DataError(f"data file {str(p)!r} holds {keys}; it needs a dict with 'x' (inputs) and optionally 'y'")
    return obj


def check_fits(model: nn.Module, data: CalibrationData, min_samples: int | None = None) -> torch.Tensor:
    """Check the data's values, run the model on a few samples (a shape or dtype mismatch becomes one
    actionable line) and the labels against its outputs. Returns the output."""
    from . import validate

    validate.check_finite(data)
    b = data.batches[0]  # a whole batch: a .pt2 exported for one batch size fails here, not mid-estimate
    try:
        with torch.no_grad():
            out = primary_output(call_model(model, b.x))
    except DataError:
        raise
    except Exception as e:  # noqa: BLE001
        hint = validate.dtype_hint(b.x)
        if hint:
            raise DataError(hint) from e
        shape = {k: tuple(v.shape) for k, v in b.x.items()} if isinstance(b.x, dict) else tuple(b.x.shape)
        msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        if "Guard failed" in msg and "size()[0]" in msg:  # torch.export's guard on the batch dimension
            raise DataError(f"the .pt2 program does not accept inputs of shape {shape} ({msg}); re-export it with "
                            "dynamic_shapes (e.g. a Dim for the batch), or pass --batch-size to match it") from e
        raise DataError(f"data with input shape {shape} does not fit the model ({msg}); "
                        "pass inputs shaped like the model's") from e
    validate.check_labels(data, out)
    validate.check_count(data, validate.MIN_SAMPLES if min_samples is None else min_samples)
    return out
