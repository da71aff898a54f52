"""Sites become GEMM queries under a workload; per-layer and model totals come from them."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from mpsearch import sites
from mpsearch.formats import get_choice
from mpsearch.hardware_models import cost_table, get, model_costs, reference


class Tiny(nn.Module):
    def __init__(self):
        super().__init__()
        self.emb = nn.Embedding(100, 32)
        self.conv = nn.Conv1d(32, 64, 3, padding=1)
        self.fc = nn.Linear(64, 16)

    def forward(self, tok):
        h = self.emb(tok).transpose(1, 2)  # (B, 32, T)
        h = self.conv(h).transpose(1, 2)  # (B, T, 64)
        return self.fc(h)


@pytest.fixture
def tiny_sites():
    torch.manual_seed(0)
    return {s.name: s for s in sites(Tiny(), torch.randint(0, 100, (2, 10)))}


def test_site_gemms(tiny_sites):
    hw = get("h100", batch=4)
    g = hw.site_gemm(tiny_sites["fc"])
    assert (g.m, g.n, g.k) == (4 * 10, 16, 64)
    c = hw.site_gemm(tiny_sites["conv"])
    assert (c.m, c.n, c.k) == (4 * 10, 64, 32 * 3) and c.in_elems == 4 * 32 * 10
    assert c.macs == 4 * tiny_sites["conv"].macs
    e = hw.site_gemm(tiny_sites["emb"])
    assert e.gather and e.m == 40 and e.macs == 0
    # seq_len replaces the traced sequence length
    g = get("h100", batch=4, seq_len=128).site_gemm(tiny_sites["fc"])
    assert g.m == 4 * 128


def test_cost_table_and_reference(tiny_sites):
    hw = get("orin", batch=8)
    table = cost_table(list(tiny_sites.values()), [get_choice("bf16"), get_choice("int8:int8")], hw)
    assert {"latency", "energy", "bytes", "bops"} <= set(table.columns)
    fc = table.set_index(["site", "format"]).loc[("fc", "bf16")]
    assert fc.latency == pytest.approx(hw.gemm_cost(80, 16, 64, "bf16").latency)
    ref = reference(Tiny(), list(tiny_sites.values()), hw)
    assert ref.full["latency"] == pytest.approx(
        table[table.format == "bf16"].latency.sum() + ref.fixed["latency"]
    )
    biases = (64 + 16) * 2  # non-site parameters at 16 bits
    assert ref.fixed["latency"] == pytest.approx(
        biases / (hw.spec.bandwidth.value * hw.spec.memory_efficiency.value)
    )


def test_latency_grows_with_batch(tiny_sites):
    s = tiny_sites["fc"]
    lat = [get("xeon-8380", batch=b).site_cost(s, get_choice("int8:int8"))["latency"] for b in (1, 64, 4096)]
    assert lat[0] <= lat[1] < lat[2]


def test_whole_model_costs(tiny_sites):
    hw, model = get("xeon-8380", batch=2), Tiny()
    site_list = list(tiny_sites.values())
    assign = {"emb": "int8", "conv": "int8:int8", "fc": "bf16"}
    df = model_costs(model, site_list, assign, hw).set_index("site")
    choices = [get_choice(f) for f in set(assign.values())]
    table = cost_table(site_list, choices, hw).set_index(["site", "format"])
    per_site = sum(table.loc[(s, f)].latency for s, f in assign.items())
    fixed = reference(model, site_list, hw).fixed
    assert df.loc["TOTAL", "latency"] == pytest.approx(per_site + fixed["latency"])
    assert df.loc["(fixed)", "bytes"] == fixed["bytes"] == (64 + 16) * 2
    assert df.loc["conv", "format"] == "int8:int8"
