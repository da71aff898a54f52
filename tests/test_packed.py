"""Packed export: decoded weights equal apply's bit for bit; site payload = the plan's predicted bytes."""

import json
import struct

import pytest
import torch

import mpsearch
from mpsearch.activations import plan_params
from mpsearch.apply import quantized
from mpsearch.errors import PlanError
from mpsearch.packed import export, load_packed

MIXED = {"features.0": "int8:int8", "features.3": "mxfp6_e3m2", "features.7": "nvfp4:fp8_e4m3",
         "classifier.1": "int4_asym_g64:int8_asym_p9999", "classifier.3": "fp4_e2m1_g16"}


PLAIN = {"features.0": "bf16", "features.3": "mxfp4", "features.7": "int3_g32", "classifier.1": "mxint8",
         "classifier.3": "fp8_e5m2"}

# Site bytes by hand from the weight shapes (rows x K): 32x9, 64x288, 64x576, 128x256, 10x128.
HAND_BYTES = {
    id(MIXED): {"features.0": 288 + 32 * 2,  # int8 codes + one FP16 scale per row
                "features.3": 18432 * 6 // 8 + 64 * 288 // 32,  # MXFP6 codes + one E8M0 byte per 32
                "features.7": 36864 // 2 + 64 * 576 // 16 + 4,  # NVFP4 codes + E4M3 per 16 + FP32 tensor scale
                "classifier.1": (32768 * 4 + 512 * 4) // 8 + 512 * 2,  # 4-bit codes + 4-bit zeros + FP16 scales
                "classifier.3": 1280 // 2 + 80 * 2},  # FP4 codes + FP16 scale per 16
    id(PLAIN): {"features.0": 288 * 2, "features.3": 18432 // 2 + 64 * 9, "features.7": 36864 * 3 // 8 + 64 * 18 * 2,
                "classifier.1": 32768 + 128 * 8, "classifier.3": 1280 + 10 * 2},
}




@pytest.mark.parametrize("assign", [MIXED, PLAIN])  # _fr round trip: tests/formats/test_full_range.py
def test_packed_file_decodes_to_apply_and_costs_what_the_plan_says(digits, tmp_path, assign):
    m = digits.model
    plan = mpsearch.Plan.from_assignments(m, assign, data=digits.calibration)
    path = tmp_path / "m.safetensors"
    r = mpsearch.export(m, plan, path)

    # bytes: the plan's prediction and the file's site tensors both equal the hand count; parameters outside
    # the sites are the plan's fixed 16-bit bytes; the rest is buffers and the header (8 + JSON length)
    hand = HAND_BYTES[id(assign)]
    assert {site: rec["bytes"] for site, rec in plan.sites.items()} == hand
    assert r.site_bytes == sum(hand.values())
    assert r.site_bytes + r.other_param_bytes == plan.totals["bytes"]
    raw = path.read_bytes()
    (header_len,) = struct.unpack("<Q", raw[:8])
    assert r.header_bytes == 8 + header_len and r.file_bytes == len(raw)
    header = json.loads(raw[8 : 8 + header_len])
    site_keys = [k for k in header if ":" in k]
    for site, n in hand.items():  # each site's tensors in the file, read from the header's offsets
        mine = [k for k in site_keys if k.startswith(f"{site}.weight:")]
        assert sum(header[k]["data_offsets"][1] - header[k]["data_offsets"][0] for k in mine) == n, site

    fresh = type(m)()
    fresh.load_state_dict(m.state_dict())
    q = mpsearch.apply(m, plan)
    loaded = mpsearch.load_packed(path, fresh)
    for site in plan.assignments:
        assert torch.equal(loaded.get_parameter(f"{site}.weight"), q.get_parameter(f"{site}.weight")), site
    # outside the sites the file holds 16-bit parameters: with those, the loaded model computes apply's output
    ref = type(m)()
    ref.load_state_dict(m.state_dict())
    with torch.no_grad():
        for n, p in ref.named_parameters():
            if n.removesuffix(".weight") not in plan.assignments:
                p.copy_(p.half().float())
    x = torch.as_tensor(digits.test["x"][:200])
    with torch.no_grad(), quantized(ref, plan.assignments, plan_params(plan.sites)):
        assert torch.equal(loaded(x), ref(x))


def test_nibble_packing_in_the_file(digits, tmp_path):
    m = digits.model
    plan = mpsearch.Plan.from_assignments(m, {"classifier.3": "int4"})
    export(m, plan, tmp_path / "m.safetensors")
    from safetensors.torch import load_file

    t = load_file(str(tmp_path / "m.safetensors"))
    packed = t["classifier.3.weight:packed"]
    assert packed.dtype == torch.uint8 and packed.numel() == 10 * 128 // 2
    enc = mpsearch.get_format("int4").encode(m.classifier[3].weight.detach())
    first = enc.codes.reshape(-1)[:2].tolist()
    assert int(packed[0]) == first[0] | first[1] << 4
    assert torch.equal(t["classifier.3.weight:scale"], enc.scales["scale"])


def test_export_cli_and_bad_files(digits, tmp_path, capsys):
    from mpsearch.cli import main

    plan = mpsearch.Plan.from_assignments(digits.model, {"classifier.1": "mxfp4", "features.7": "nvfp4"})
    plan.save(tmp_path / "p.json")
    out = str(tmp_path / "o.safetensors")
    assert main(["export", "--example", "digits-cnn", str(tmp_path / "p.json"), "-o", out]) == 0
    assert f"plan predicted {int(sum(r['bytes'] for r in plan.sites.values()))}" in capsys.readouterr().err
    (tmp_path / "junk.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(PlanError, match="not a safetensors"):
        load_packed(tmp_path / "junk.safetensors", digits.model)
    with pytest.raises(PlanError, match="does not exist"):
        load_packed(tmp_path / "missing.safetensors", digits.model)
