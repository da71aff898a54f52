"""GPTQ on the block-scaled formats (OCP MX, NVFP4): the same sweep as for INT, on their own grids.

With an identity Hessian GPTQ spreads no error, so its stored form must equal the format's own
`encode` bit for bit (same shared exponents / E4M3 block scales / tensor scale, same elements); with
correlated inputs it must lower the layer's reconstruction error ‖(W − Ŵ)X‖² against round-to-nearest.
"""

import pytest
import torch

from mpsearch.formats import get_format
from mpsearch.rounding.gptq import gptq_encode

BLOCK_FORMATS = ["mxfp4", "mxfp6_e2m3", "mxfp8_e4m3", "mxint8", "nvfp4"]


def _weight(rows=24, k=80, seed=0):
    g = torch.Generator().manual_seed(seed)
    w = torch.randn(rows, k, generator=g)
    w[:, 5] *= 9.0  # an outlier column: blocks with very different scales
    return w


@pytest.mark.parametrize("name", BLOCK_FORMATS)
def test_identity_hessian_gives_the_formats_own_encoding(name):
    fmt, w = get_format(name), _weight()
    got = gptq_encode(fmt, w, torch.eye(w.shape[1]))
    ref = fmt.encode(w)
    assert torch.equal(got.codes, ref.codes)
    assert got.scales.keys() == ref.scales.keys()
    for key in ref.scales:
        assert torch.equal(got.scales[key], ref.scales[key]), key
    assert torch.equal(fmt.decode(got, tuple(w.shape)), fmt.quantize(w))


@pytest.mark.parametrize("name", ["mxfp4", "nvfp4"])
def test_correlated_inputs_lower_the_reconstruction_error(name):
    fmt, w = get_format(name), _weight(32, 128, seed=1)
    g = torch.Generator().manual_seed(2)
    mix = torch.randn(128, 128, generator=g) * 0.3 + torch.eye(128)
    x = torch.randn(128, 512, generator=g).T @ mix  # (n, K) inputs with correlated features
    h = 2 * x.T @ x / x.shape[0]
    enc = gptq_encode(fmt, w, h)
    gptq, rtn = fmt.decode(enc, tuple(w.shape)), fmt.quantize(w)
    err = lambda wq: float(((w - wq) @ x.T).pow(2).sum())  # noqa: E731
    assert err(gptq) < 0.8 * err(rtn), (err(gptq), err(rtn))
    # every stored element is still on the format's grid: decoding its own encoding is idempotent
    assert torch.equal(fmt.quantize(gptq), gptq)
