"""Hutchinson traces in micro-batches: the same numbers as one pass over all the data, and passes of probes
that run out of memory are split instead of failing."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import mpsearch
from mpsearch.sensitivity.hessian import _in_passes


def _model_and_data():
    torch.manual_seed(0)
    m = nn.Sequential(nn.Linear(6, 8), nn.Tanh(), nn.Linear(8, 3))
    x, y = torch.randn(48, 6), torch.randint(0, 3, (48,))
    return m, x, y


@pytest.mark.parametrize("hvp", ["double", "func"])
def test_micro_batched_traces_equal_one_pass(hvp):
    """HVPs summed over 6 micro-batches of 8 are the HVP of the whole-data loss: same probes, same traces."""
    m, x, y = _model_and_data()
    kw = dict(method="hutchinson", hvp=hvp, max_probes=12, min_probes=12, adaptive=False, formats="int4",
              cache=False, seed=5)
    whole = mpsearch.sensitivity(m, mpsearch.data.as_data((x, y), batch_size=48), **kw)
    seen = []
    h = m[0].register_forward_pre_hook(lambda mod, inp: seen.append(inp[0].shape[0] if torch.is_grad_enabled() else 0))
    micro = mpsearch.sensitivity(m, mpsearch.data.as_data((x, y), batch_size=48), micro_batch=8, **kw)
    h.remove()
    assert max(seen) == 8  # no pass holds more than one micro-batch's graph
    assert micro.settings["micro_batch"] == 8 and micro.settings["method"] == "hutchinson"
    a, b = whole.site_info.trace.to_numpy(), micro.site_info.trace.to_numpy()
    assert (abs(a) > 0).all()
    torch.testing.assert_close(torch.tensor(b), torch.tensor(a), rtol=1e-5, atol=1e-7)
    # the data's own batches are the default micro-batches
    own = mpsearch.sensitivity(m, mpsearch.data.as_data((x, y), batch_size=8), **kw)
    torch.testing.assert_close(torch.tensor(own.site_info.trace.to_numpy()), torch.tensor(a), rtol=1e-5, atol=1e-7)


def test_a_pass_that_runs_out_of_memory_is_split():
    """An engine that fails above 2 probes per call: the 8 probes go through in passes of 2, same result."""
    calls = []

    def engine(vs):
        calls.append(vs[0].shape[0])
        if vs[0].shape[0] > 2:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return [v * 3.0 for v in vs]

    vs = [torch.randn(8, 4, 5), torch.randn(8, 7)]
    hv, size = _in_passes(engine, vs, 8)
    assert size == 2 and calls == [8, 4, 2, 2, 2, 2]
    for v, h in zip(vs, hv, strict=True):
        torch.testing.assert_close(h, v * 3.0)


def test_other_errors_and_one_probe_out_of_memory_still_raise():
    def broken(vs):
        raise RuntimeError("shape mismatch")

    with pytest.raises(RuntimeError, match="shape mismatch"):
        _in_passes(broken, [torch.randn(4, 3)], 4)

    def oom(vs):
        raise torch.OutOfMemoryError("CUDA out of memory")

    with pytest.raises(torch.OutOfMemoryError):
        _in_passes(oom, [torch.randn(4, 3)], 4)


@pytest.mark.parametrize("bad", [0, -1])
def test_a_micro_batch_below_one_is_refused(bad):
    from mpsearch.errors import UsageError

    m, x, y = _model_and_data()
    with pytest.raises(UsageError, match=f"micro_batch must be a positive number of samples \\(got {bad}\\)"):
        mpsearch.sensitivity(m, (x, y), method="hutchinson", micro_batch=bad, max_probes=2, cache=False)
