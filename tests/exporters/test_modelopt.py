"""ModelOpt unified checkpoint: the MIXED_PRECISION schema, ModelOpt's own config converter, and the
stored weights decoded as ModelOpt decodes them equal mpsearch's simulated weights."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

import mpsearch
from mpsearch.exporters import export
from mpsearch.formats import get_format

safetensors = pytest.importorskip("safetensors.torch")


class Block(nn.Module):
    def __init__(self):
        super().__init__()
        self.q_proj, self.k_proj, self.v_proj = nn.Linear(128, 64), nn.Linear(128, 64), nn.Linear(128, 64)
        self.down_proj, self.up_proj, self.lm_head = nn.Linear(192, 128), nn.Linear(128, 256), nn.Linear(256, 32)

    def forward(self, x):
        h = torch.cat([self.q_proj(x), self.k_proj(x), self.v_proj(x)], -1)
        return self.lm_head(self.up_proj(self.down_proj(h)))


def test_mixed_precision_checkpoint(tmp_path):
    torch.manual_seed(0)
    model, x = Block().eval(), torch.randn(16, 128)
    assign = {"q_proj": "int4_g128", "k_proj": "int4_g128", "v_proj": "int4_g128", "down_proj": "nvfp4",
              "up_proj": "int8:int8"}
    plan = mpsearch.Plan.from_assignments(model, assign, data=x, example=x[:1])
    r = export(model, plan, tmp_path / "ckpt", "tensorrt-llm")
    assert r.site_bytes == r.predicted_site_bytes + 2 * 256  # INT8 SQ scales: ModelOpt stores float32, the plan fp16
    hfq = json.loads((tmp_path / "ckpt" / "hf_quant_config.json").read_text())["quantization"]
    assert hfq["quant_algo"] == "MIXED_PRECISION" and hfq["exclude_modules"] == ["lm_head"]
    assert hfq["quantized_layers"]["q_proj"] == {"quant_algo": "W4A16_AWQ", "group_size": 128}
    assert hfq["quantized_layers"]["down_proj"] == {"quant_algo": "W4A16_NVFP4", "group_size": 16}
    assert hfq["quantized_layers"]["up_proj"] == {"quant_algo": "W8A8_SQ_PER_CHANNEL"}
    qc = json.loads((tmp_path / "ckpt" / "config.json").read_text())["quantization_config"]

    t = safetensors.load_file(str(tmp_path / "ckpt" / "model.safetensors"))
    w = dict(model.named_parameters())
    sim = {n: get_format(f.split(":")[0]).quantize(w[f"{n}.weight"].detach()) for n, f in assign.items()}
    packed = t["q_proj.weight"].to(torch.int64)  # ModelOpt's pack_int4_in_uint8: rows 2i | 2i+1 << 4
    nib = torch.stack([packed & 0xF, packed >> 4], 1).reshape(64, 128)
    q = torch.where(nib >= 8, nib - 16, nib).float()
    scale = t["q_proj.weight_scale"].float().repeat_interleave(128, 1)
    assert torch.equal(q * scale, sim["q_proj"])
    modelopt = pytest.importorskip("modelopt.torch.export.quant_utils")
    assert torch.equal(modelopt.from_quantized_weight(t["up_proj.weight"], t["up_proj.weight_scale"], "int8_sq",
                                                      torch.float32), sim["up_proj"])
    from modelopt.torch.quantization.qtensor.nvfp4_tensor import NVFP4QTensor

    qt = NVFP4QTensor(torch.Size([128, 192]), torch.float32, t["down_proj.weight"])
    got = qt.dequantize(torch.float32, scale=t["down_proj.weight_scale"], double_scale=t["down_proj.weight_scale_2"],
                        block_sizes={-1: 16})
    assert torch.allclose(got, sim["down_proj"], rtol=2**-22, atol=0)  # P·(s·g) vs (P·s)·g: one rounding apart
    groups = {tuple(g["targets"]): g for g in qc["config_groups"].values()}  # ModelOpt's own converter
    assert groups[("k_proj", "q_proj", "v_proj")]["weights"] == {"dynamic": False, "num_bits": 4, "type": "int",
                                                               "group_size": 128}
