"""A Mixtral plan quantizes its MoE experts per expert and output channel: the plan's bytes, the packed
file's bytes and `load_packed` agree with `apply`; exporters without an experts layout refuse in one line."""

import math

import pytest
import torch

import mpsearch
from mpsearch.errors import ExportError
from mpsearch.hf import prepare
from mpsearch.model import sites
from mpsearch.plan import Plan

from .conftest import tiny, token_batch

EXPERT_FORMATS = {"gate_up_proj": "int4", "down_proj": "mxfp4"}


@pytest.fixture(scope="module")
def mixtral():
    model = prepare(tiny("mixtral"))
    x = token_batch(1, 8)["x"]["input_ids"]
    site_list = sites(model, x)
    assign = {s.name: EXPERT_FORMATS[s.name.rpartition(".")[2]] if s.kind == "experts" else "int8" for s in site_list}
    return model, site_list, Plan.from_assignments(model, assign, example=x)


def test_mixtral_packed_bytes_equal_the_plan_and_load_packed_equals_apply(mixtral, tmp_path):
    model, site_list, plan = mixtral
    experts = [s for s in site_list if s.kind == "experts"]
    assert len(experts) == 4
    for s in experts:  # E x the bits of one expert's (out, in) Linear weight: a scale per expert per row
        e, out, k = s.shape
        fmt = mpsearch.get_format(plan.assignments[s.name])
        assert plan.sites[s.name]["bytes"] == math.ceil(e * fmt.storage_bits((out, k)) / 8), s.name
    r = mpsearch.export(model, plan, tmp_path / "m.safetensors")
    assert r.site_bytes == r.predicted_site_bytes
    q = mpsearch.apply(model, plan)
    loaded = mpsearch.load_packed(tmp_path / "m.safetensors", prepare(tiny("mixtral")))
    for s in site_list:
        assert torch.equal(loaded.get_parameter(s.param), q.get_parameter(s.param)), s.name
    for s in experts:  # apply quantized each expert as its own Linear weight
        w, fmt = model.get_parameter(s.param).detach(), mpsearch.get_format(plan.assignments[s.name])
        assert torch.equal(q.get_parameter(s.param), torch.stack([fmt.quantize(w[e]) for e in range(len(w))]))


@pytest.mark.parametrize("exporter", ["compressed_tensors", "modelopt"])
def test_exporters_without_an_experts_layout_refuse_quantized_experts(mixtral, tmp_path, exporter):
    """Checked without a target profile (which would keep experts 16-bit): the exporter itself refuses."""
    pytest.importorskip("compressed_tensors")
    import importlib

    write = getattr(importlib.import_module(f"mpsearch.exporters.{exporter}"), f"export_{exporter}")
    model, site_list, _ = mixtral  # int4_g128: a format both write for a Linear site
    plan = Plan.from_assignments(model, {s.name: "int4_g128" for s in site_list if s.kind == "experts"},
                                 example=token_batch(1, 8)["x"]["input_ids"])
    with pytest.raises(ExportError, match=r"experts weight; keep experts at bf16 with --pin") as e:
        write(model, plan, tmp_path / "out")
    assert "\n" not in str(e.value) and not (tmp_path / "out").exists()
