"""Coverage of plans (what stays 16-bit), the atomic writer, and Ctrl-C while the CLI imports."""

from __future__ import annotations

import importlib.abc
import sys

import pytest
import torch
from torch import nn

import mpsearch
from mpsearch.io import atomic_write
from mpsearch.plan import Plan


class Tagger(nn.Module):
    """An LSTM (no rule quantizes it) between two Linear sites."""

    def __init__(self):
        super().__init__()
        self.inp = nn.Linear(4, 8)
        self.lstm = nn.LSTM(8, 8, batch_first=True)
        self.out = nn.Linear(8, 3)

    def forward(self, x):
        return self.out(self.lstm(self.inp(x))[0][:, -1])


def test_plan_states_the_weights_it_leaves_16bit():
    torch.manual_seed(0)
    m = Tagger().eval()
    plan = Plan.from_assignments(m, {"inp": "int4", "out": "int4"})
    n = {k: p.numel() for k, p in m.named_parameters()}
    outside = sum(v for k, v in n.items() if k not in ("inp.weight", "out.weight"))
    assert plan.totals["unquantized_params"] == outside
    assert plan.totals["unquantized_share"] == pytest.approx(outside / sum(n.values()))
    lstm = sorted((k for k in n if k.startswith("lstm.")), key=lambda k: -n[k])
    assert [r["name"] for r in plan.unquantized[:2]] == lstm[:2]  # the largest: the LSTM's weight matrices
    assert plan.unquantized[0]["module"] == "LSTM"
    site_bits = sum(r["bits"] for r in plan.sites.values())
    assert plan.totals["avg_bits_all_weights"] == pytest.approx((site_bits + 16 * outside) / sum(n.values()))
    assert plan.totals["avg_bits"] == pytest.approx(site_bits / (n["inp.weight"] + n["out.weight"]))
    from mpsearch.report import totals_line

    line = totals_line(plan).splitlines()[1]
    assert line.startswith(f"unquantized: {outside / sum(n.values()):.1%} of the weights stay 16-bit")
    assert "lstm.weight_ih_l0" in line or "lstm.weight_hh_l0" in line
    assert Plan.from_dict(__import__("json").loads(plan.to_json())).unquantized == plan.unquantized


def test_plan_missing_an_unexecuted_site_still_applies():
    """A site the example input never ran is left out of a searched plan; apply accepts that, no other gap."""
    class Branchy(nn.Module):
        def __init__(self):
            super().__init__()
            self.a, self.unused = nn.Linear(4, 4), nn.Linear(4, 4)

        def forward(self, x):
            return self.a(x)

    torch.manual_seed(0)
    m, x = Branchy().eval(), torch.randn(16, 4)
    plan = mpsearch.plan(m, x, budget="8bits", guard_uniform=False)
    assert list(plan.assignments) == ["a"] and plan.provenance["unexecuted_sites"] == ["unused"]
    q = mpsearch.apply(m, plan)
    assert not torch.equal(q.a.weight, m.a.weight) and torch.equal(q.unused.weight, m.unused.weight)
    plan.provenance.pop("unexecuted_sites")
    with pytest.raises(mpsearch.ModelMismatch, match="gives no format for site 'unused'"):
        mpsearch.apply(m, plan)


def test_atomic_write_leaves_nothing_when_the_writer_fails(tmp_path):
    def write(tmp):
        assert tmp.endswith(".pt2")  # torch.export.save warns about any other suffix
        open(tmp, "wb").write(b"half")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError):
        atomic_write(tmp_path / "m.pt2", write)
    assert list(tmp_path.iterdir()) == []


class _Interrupt(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == "mpsearch.cli":
            raise KeyboardInterrupt
        return None


def test_ctrl_c_while_the_cli_imports_is_one_line_and_130(monkeypatch, capsys):
    import mpsearch_launcher

    for mod in [m for m in sys.modules if m == "mpsearch.cli" or m.startswith("mpsearch.cli.")]:
        monkeypatch.delitem(sys.modules, mod)
    monkeypatch.delattr(mpsearch, "cli", raising=False)
    monkeypatch.setattr(sys, "meta_path", [_Interrupt(), *sys.meta_path])
    assert mpsearch_launcher.main(["formats"]) == 130
    assert capsys.readouterr().err == "mpsearch: interrupted\n"
