"""Plans round-trip through JSON, bind to their model, and apply realizes them."""

from __future__ import annotations

import json
import math

import pytest
import torch

import mpsearch
from mpsearch import ModelMismatch, Plan, PlanError
from mpsearch.formats import get_format


def test_from_assignments_counts_bytes_exactly(digits):
    m = digits.model
    plan = Plan.from_assignments(m, {"features.3": "int4", "classifier.1": "int2_g32"})
    sites = {s.name: s for s in mpsearch.sites(m)}
    assert plan.assignments["features.0"] == "bf16"  # unnamed sites keep 16 bits
    expected_bits = sum(get_format(f).storage_bits(sites[s].shape) for s, f in plan.assignments.items())
    expected_bytes = sum(math.ceil(get_format(f).storage_bits(sites[s].shape) / 8) for s, f in plan.assignments.items())
    other = sum(p.numel() for n, p in m.named_parameters() if not n.endswith(".weight") or "features.1" in n
                or "features.4" in n or "features.8" in n)
    assert plan.totals["avg_bits"] == pytest.approx(expected_bits / sum(s.numel for s in sites.values()))
    assert plan.totals["bytes"] == expected_bytes + 2 * other  # biases and BN params at 16 bits
    # int4 per-channel on a (64, 32, 3, 3) conv: 4 bits x 18432 + one fp16 scale per output channel
    assert plan.sites["features.3"]["bits"] == 18432 * 4 + 64 * 16


def test_save_load_roundtrip_and_schema(tmp_path, digits):
    plan = Plan.from_assignments(digits.model, {"features.3": "int4"})
    path = plan.save(tmp_path / "sub" / "plan.json")
    assert not list(path.parent.glob(".*tmp"))  # the temp file was renamed away
    back = Plan.load(path)
    assert back.assignments == plan.assignments and back.fingerprint == plan.fingerprint
    obj = json.loads(path.read_text())
    obj["schema_version"] = 99
    (tmp_path / "new.json").write_text(json.dumps(obj))
    with pytest.raises(PlanError, match="newer"):
        Plan.load(tmp_path / "new.json")
    (tmp_path / "junk.json").write_text("{not json")
    with pytest.raises(PlanError, match="not valid JSON"):
        Plan.load(tmp_path / "junk.json")


def test_from_assignments_rejects_unknown_site(digits):
    with pytest.raises(PlanError, match="did you mean features.3"):
        Plan.from_assignments(digits.model, {"features.33": "int4"})


def test_apply_quantizes_exactly_and_refuses_other_models(digits, tiny):
    plan = Plan.from_assignments(digits.model, {"features.3": "int3", "classifier.1": "int2"})
    q = mpsearch.apply(digits.model, plan)
    w = digits.model.features[3].weight
    assert torch.equal(q.features[3].weight, get_format("int3").quantize(w))
    assert len(torch.unique(q.classifier[1].weight[0])) <= 3  # ternary rows
    assert torch.equal(q.features[0].weight, digits.model.features[0].weight.detach().to(torch.bfloat16).float())
    assert not torch.equal(q.features[3].weight, w)  # the original model is untouched
    with pytest.raises(ModelMismatch, match="another model"):
        mpsearch.apply(tiny[0], plan)
