"""From a model's sites to GEMM queries: batch size and sequence length are workload parameters.

A `Site` records per-sample shapes from one traced forward. A linear site whose per-sample input
is (T, ..., K) runs M = batch · T · ... rows; `seq_len` replaces T (the first per-sample dim) so one
trace serves several sequence lengths. A convolution is an implicit GEMM with M = batch · output
pixels, N = output channels, K = weight elements per output channel (so M·N·K = batch · MACs).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from mpsearch.errors import UsageError
from mpsearch.model import Site

from ._roofline import Gemm


@dataclass(frozen=True)
class Workload:
    """How the model is run on the target: samples per call and (for sequence models) tokens each."""

    batch: int = 1
    seq_len: int | None = None

    def __post_init__(self) -> None:
        if self.batch < 1 or (self.seq_len is not None and self.seq_len < 1):
            raise UsageError(
                f"workload batch and seq_len must be positive (got batch={self.batch}, "
                f"seq_len={self.seq_len})"
            )

    def __str__(self) -> str:
        return f"batch={self.batch}" + (f",seq={self.seq_len}" if self.seq_len else "")


def _rows(shape: tuple[int, ...] | None, seq_len: int | None, last: bool) -> int:
    """Per-sample rows of an activation: every dim but the last (the features), with T replaced."""
    if not shape:
        return 1
    dims = list(shape[:-1] if last else shape)
    if seq_len is not None and dims:
        dims[0] = seq_len
    return math.prod(dims) if dims else 1


def site_gemms(site: Site, w: Workload) -> list[Gemm]:
    """Every GEMM the site's weight takes part in: its own, plus one per use of another kind (a tied
    embedding is a gather and the LM head's GEMM; pricing the gather alone dropped the head)."""
    from dataclasses import replace

    return [site_gemm(site, w)] + [site_gemm(replace(site, kind=k, input_shape=i, output_shape=o, uses=()), w)
                                   for k, i, o in site.uses]


def site_gemm(site: Site, w: Workload) -> Gemm:
    b = w.batch
    if site.kind == "embedding":
        tokens = _rows(site.input_shape, w.seq_len, last=False) if site.input_shape is not None else 1
        return Gemm(
            m=b * tokens,
            n=site.shape[1],
            k=1,
            out_elems=b * tokens * site.shape[1],
            weight_shape=site.shape,
            gather=True,
        )
    if site.kind == "experts":  # MoE: every token reads top_k of the experts (the routed fraction)
        e, n, k = site.shape
        rows = max(1, site.macs // (n * k)) if site.macs else 1
        # the routed experts' weights as the (experts·out, in) matrix a format stores (`Site.layout`)
        return Gemm(m=b * rows, n=n, k=k, weight_shape=(max(1, round(e * site.active)) * n, k))
    n = site.shape[0]
    k = math.prod(site.shape[1:])
    if site.kind == "linear":
        rows = _rows(site.input_shape, w.seq_len, last=True)
        return Gemm(m=b * rows, n=n, k=k, weight_shape=site.shape)
    # convolution: output pixels per sample from the traced output shape (C_out, *spatial)
    if site.output_shape and site.input_shape:
        pixels = math.prod(site.output_shape[1:])
        return Gemm(
            m=b * pixels,
            n=n,
            k=k,
            in_elems=b * math.prod(site.input_shape),
            out_elems=b * math.prod(site.output_shape),
            weight_shape=site.shape,
        )
    return Gemm(m=b, n=n, k=k, weight_shape=site.shape)  # untraced: one output pixel per sample
