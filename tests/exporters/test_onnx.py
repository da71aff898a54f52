"""ONNX export: ONNX Runtime runs the plan's formats and agrees with the simulated model."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import mpsearch
from mpsearch.activations import plan_params
from mpsearch.apply import quantized
from mpsearch.errors import ExportError
from mpsearch.formats import get_format

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
from mpsearch.exporters.onnx import export_onnx, run_onnx  # noqa: E402

MIXED = {"features.0": "bf16", "features.3": "int4_g32", "features.7": "int8:int8",
         "classifier.1": "int4_asym_g64:int8_asym", "classifier.3": "int8_pt"}


@pytest.fixture(scope="module")
def exported(tmp_path_factory, digits_shared):
    ex = digits_shared
    plan = mpsearch.Plan.from_assignments(ex.model, MIXED, data=ex.calibration)
    path = tmp_path_factory.mktemp("onnx") / "digits.onnx"
    return ex, plan, path, export_onnx(ex.model, plan, path, ex.test["x"][:1])


def simulated(ex, plan, x):
    with torch.no_grad(), quantized(ex.model, plan.assignments, plan_params(plan.sites)):
        return ex.model(x).numpy()


def test_onnxruntime_agrees_with_the_simulated_model(exported):
    ex, plan, path, _ = exported
    x = ex.test["x"]
    got, want = run_onnx(path, x), simulated(ex, plan, x)
    assert (got.argmax(1) == want.argmax(1)).mean() >= 0.99
    assert np.abs(got - want).max() < 0.05  # int8 activations: a code may flip at a rounding tie


def test_decoded_weights_equal_format_quantize_bit_for_bit(exported):
    ex, plan, path, _ = exported
    m = onnx.load(str(path))
    params = dict(ex.model.named_parameters())
    names = [f"{s}.weight" for s in MIXED]
    for n in names:
        m.graph.output.append(onnx.helper.make_tensor_value_info(n, onnx.TensorProto.FLOAT, None))
    sess = ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"])
    outs = sess.run(names, {"input": ex.test["x"][:1].numpy()})
    for site, got in zip(MIXED, outs):
        fmt = get_format(MIXED[site].split(":")[0])
        want = fmt.quantize(params[f"{site}.weight"].detach().float()).numpy()
        assert got.shape == want.shape and np.array_equal(got, want), site
    ops = {n.op_type for n in m.graph.node}
    assert {"DequantizeLinear", "QuantizeLinear"} <= ops and m.opset_import[0].version == 21


def test_site_bytes_match_the_plan(exported):
    _, plan, path, r = exported
    fours = sum(1 for f in MIXED.values() if f.startswith("int4"))  # an odd 4-bit tensor pads half a byte
    assert abs(r.site_bytes - r.predicted_site_bytes) <= 2 * fours
    assert r.site_bytes + r.other_bytes == path.stat().st_size


def test_weight_only_plan_matches_to_float_rounding(digits_shared, tmp_path):
    ex = digits_shared
    plan = mpsearch.Plan.from_assignments(ex.model, {s: "int4" for s in MIXED})
    path = tmp_path / "w4.onnx"
    export_onnx(ex.model, plan, path, ex.test["x"][:1])
    x = ex.test["x"][:64]
    assert np.abs(run_onnx(path, x) - simulated(ex, plan, x)).max() < 1e-3


def test_formats_onnx_cannot_run_are_refused_by_name(digits_shared, tmp_path):
    ex = digits_shared
    plan = mpsearch.Plan.from_assignments(ex.model, {"features.3": "int3", "classifier.1": "fp8_e4m3"})
    with pytest.raises(ExportError, match=r"2 site\(s\): features.3 \(int3: .*classifier.1 \(fp8_e4m3"):
        export_onnx(ex.model, plan, tmp_path / "x.onnx", ex.test["x"][:1])
    assert list(tmp_path.iterdir()) == []  # nothing half-written
