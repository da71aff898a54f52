"""Run a static-batch exported model on any number of rows.

Most exported models in the wild were traced with one example batch and no dynamic dimension, so
their graph only accepts exactly that many rows, while mpsearch probes with 2 samples and calibrates
on whatever the data holds. `adapt(gm)` makes such a graph module take any batch: fewer rows are
padded (by repeating the last row) up to the exported batch and the padding is cut from the output;
more rows run in chunks of the exported batch. Padding rows never reach the loss, so every estimate
equals the one the same samples give a dynamic-batch export. Parameter names are unchanged (the
forward is swapped on the instance), so plans, fingerprints and `apply` see the same model.
"""

from __future__ import annotations

import functools
import logging

import torch

log = logging.getLogger("mpsearch")


def exported_batch(gm: torch.nn.Module) -> int | None:
    """The static leading dim shared by every tensor input of an exported graph (None: dynamic or not a graph)."""
    if not isinstance(gm, torch.fx.GraphModule):
        return None
    sizes = set()
    for node in gm.graph.nodes:
        if node.op != "placeholder":
            continue
        val = node.meta.get("val")
        if isinstance(val, torch.Tensor) and val.dim() > 0:
            b0 = val.shape[0]
            sizes.add(b0 if isinstance(b0, int) else None)  # a dynamic dim is a SymInt, which is unhashable
    if len(sizes) != 1:
        return None
    (b,) = sizes
    return b if isinstance(b, int) else None


def _cat(parts: list, n: int):
    first = parts[0]
    if isinstance(first, torch.Tensor):
        return torch.cat(parts)[:n]
    if isinstance(first, (tuple, list)):
        return type(first)(_cat([p[i] for p in parts], n) for i in range(len(first)))
    return first


def _wrap(gm: torch.nn.Module, b: int) -> None:
    """Swap in the padding / chunking forward (on the instance: parameter names stay as they are)."""

    def forward(*args):
        call = type(gm).forward  # looked up per call: taps recompile the graph
        rows = {a.shape[0] for a in args if isinstance(a, torch.Tensor) and a.dim() > 0}
        if rows == {b} or len(rows) != 1:
            return call(gm, *args)
        (n,) = rows
        outs = []
        for i in range(0, n, b):
            chunk = [a[i:i + b] if isinstance(a, torch.Tensor) and a.dim() > 0 else a for a in args]
            m = next(c.shape[0] for c in chunk if isinstance(c, torch.Tensor) and c.dim() > 0)
            if m < b:
                chunk = [torch.cat([c, c[-1:].expand(b - m, *c.shape[1:])]) if isinstance(c, torch.Tensor)
                         and c.dim() > 0 else c for c in chunk]
            outs.append(call(gm, *chunk))
        return _cat(outs, n)

    gm.forward = forward
    gm._mpsearch_static_batch = b


def adapt(gm: torch.nn.Module) -> int | None:
    """Let a static-batch graph module take any number of rows (in place); returns the exported batch.
    A deep copy (`apply` quantizes one) is adapted too: GraphModule's copy rebuilds the instance from its
    graph, dropping the swapped forward, so the copy would refuse every batch but b."""
    b = exported_batch(gm)
    if b is None or getattr(gm, "_mpsearch_static_batch", None):
        return b
    _wrap(gm, b)
    register = getattr(gm, "_register_deepcopy_hook", None)  # torch.fx's hook, run on every copy made
    if register is not None:
        register(functools.partial(_wrap, b=b))
    log.warning("the model was exported with a static batch of %d: smaller batches are padded to %d rows "
                "(the padding is cut from the outputs) and larger ones run in chunks of %d", b, b, b)
    return b


def fit_rows(gm: torch.nn.Module, example):
    """`example` cut or padded to the exported batch, for code that runs the graph without its forward
    (an fx Interpreter); unchanged for a dynamic-batch model."""
    b = getattr(gm, "_mpsearch_static_batch", None)
    args = example if isinstance(example, (tuple, list)) else (example,)
    if b is None:
        return example
    out = []
    for a in args:
        if isinstance(a, torch.Tensor) and a.dim() > 0 and a.shape[0] != b:
            a = a[:b] if a.shape[0] > b else torch.cat([a, a[-1:].expand(b - a.shape[0], *a.shape[1:])])
        out.append(a)
    return type(args)(out) if isinstance(example, (tuple, list)) else out[0]


def fit_batches(gm: torch.nn.Module, data):
    """`data` (a CalibrationData) cut into batches of exactly the exported batch, for estimators that tap
    each op once per forward (per-sample gradients, the exact Gauss-Newton trace): the chunking forward
    of `adapt` would run every op several times. The last n mod b samples are left out (said once).
    Unchanged for a dynamic-batch model, or when there are fewer samples than one exported batch."""
    b = getattr(gm, "_mpsearch_static_batch", None)
    n = data.num_samples
    if b is None or n < b or all(t.size == b for t in data):
        return data
    if n % b:
        log.warning("static batch of %d: %d of %d calibration samples left out of the estimate", b, n % b, n)
    return data.rebatched(b)
