"""Site discovery and fingerprints: the same model gives the same sites in nn.Module and .pt2 form."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import mpsearch
from mpsearch import NoQuantizableSites
from mpsearch.model import fingerprint


def export_roundtrip(model, x, tmp_path):
    ep = torch.export.export(model, (x,), dynamic_shapes=({0: torch.export.Dim("batch")},))
    torch.export.save(ep, str(tmp_path / "m.pt2"))
    return torch.export.load(str(tmp_path / "m.pt2")).module()


def test_sites_and_macs_of_digits_cnn(digits):
    x = digits.calibration["x"][:4]
    sites = mpsearch.sites(digits.model, x)
    assert [s.name for s in sites] == ["features.0", "features.3", "features.7", "classifier.1", "classifier.3"]
    conv1, conv2, conv3, fc1, fc2 = sites
    assert conv1.macs == 32 * 8 * 8 * 1 * 9          # out channels x out pixels x (in x kernel)
    assert conv2.macs == 64 * 8 * 8 * 32 * 9
    assert conv3.macs == 64 * 4 * 4 * 64 * 9
    assert fc1.macs == 128 * 256 and fc2.macs == 10 * 128
    assert conv2.input_shape == (32, 8, 8) and fc1.output_shape == (128,)
    assert sum(s.numel for s in sites) == sum(m.weight.numel() for m in digits.model.modules()
                                              if isinstance(m, (nn.Conv2d, nn.Linear)))


def test_exported_program_gives_same_sites_and_fingerprint(digits, tmp_path):
    x = digits.calibration["x"][:4]
    gm = export_roundtrip(digits.model, x, tmp_path)
    assert not any(isinstance(m, nn.Conv2d) for m in gm.modules())  # really a graph, not modules
    assert mpsearch.sites(gm, x) == mpsearch.sites(digits.model, x)
    assert fingerprint(gm) == fingerprint(digits.model)


def test_tied_weight_is_one_site_and_unused_layers_drop_out():
    class LM(nn.Module):
        def __init__(self):
            super().__init__()
            self.emb = nn.Embedding(50, 16)
            self.mid = nn.Linear(16, 16)
            self.unused = nn.Linear(16, 16)
            self.head = nn.Linear(16, 50, bias=False)
            self.head.weight = self.emb.weight

        def forward(self, ids):
            return self.head(torch.relu(self.mid(self.emb(ids))))

    m = LM()
    ids = torch.randint(0, 50, (2, 7))
    sites = mpsearch.sites(m, ids)
    assert [s.name for s in sites] == ["emb", "mid"]
    emb = sites[0]
    assert emb.macs == 7 * 16 * 50  # the tied head's MACs count on the shared weight
    assert {s.name for s in mpsearch.sites(m)} == {"emb", "mid", "unused"}  # structural, no example


def test_fingerprint_changes_with_weights(tiny):
    model = tiny[0]
    a = fingerprint(model)
    clone = type(model)()
    clone.load_state_dict(model.state_dict())
    assert fingerprint(clone) == a
    with torch.no_grad():
        clone.fc2.weight[0, 0] += 1e-6
    assert fingerprint(clone) != a


def test_model_without_quantizable_layers():
    with pytest.raises(NoQuantizableSites, match="no Linear"):
        mpsearch.sites(nn.Sequential(nn.ReLU(), nn.BatchNorm1d(3)))


def test_fingerprint_covers_buffers(digits, tmp_path):
    """BatchNorm running statistics change the function: the fingerprint must change with them (a
    plan or a cached table made for the old statistics must not be served)."""
    a = fingerprint(digits.model)
    gm = export_roundtrip(digits.model, digits.calibration["x"][:4], tmp_path)
    assert fingerprint(gm) == a
    bn = next(m for m in digits.model.modules() if isinstance(m, nn.BatchNorm2d))
    with torch.no_grad():
        bn.running_var.mul_(4)
    assert fingerprint(digits.model) != a


@pytest.mark.parametrize("content", [b"not a zip at all", "zip"])
def test_a_corrupt_pt2_gives_only_our_one_line_error(tmp_path, content):
    import logging
    import zipfile

    from mpsearch.errors import ModelLoadError
    from mpsearch.loading import load_model

    p = tmp_path / "bad.pt2"
    if content == "zip":
        with zipfile.ZipFile(p, "w") as z:
            z.writestr("archive/data.pkl", b"junk")
    else:
        p.write_bytes(content)
    records = []

    class Keep(logging.Handler):
        def emit(self, record):
            records.append(record)

    h = Keep()
    logging.getLogger("torch.export").addHandler(h)
    try:
        with pytest.raises(ModelLoadError, match="cannot read .* as a torch.export archive") as e:
            load_model(p)
    finally:
        logging.getLogger("torch.export").removeHandler(h)
    assert records == [] and "\n" not in str(e.value) and "warnings above" not in str(e.value)


def _graph_weight_params(model, x):
    """Independent count: every parameter that feeds an aten linear/conv/embedding/addmm node."""
    ep = torch.export.export(model, (x,))
    gm = ep.module()
    params = dict(gm.named_parameters())
    found = set()
    for node in gm.graph.nodes:
        name = str(node.target)
        if node.op == "call_function" and any(k in name for k in ("linear", "conv", "embedding", "addmm")):
            for a in node.args:
                if isinstance(a, torch.fx.Node) and a.op == "get_attr" and a.target in params \
                        and params[a.target].dim() >= 2:
                    found.add(a.target)
    return found, gm


def test_multihead_attention_projections_are_sites_as_in_the_graph():
    """nn.MultiheadAttention calls F.multi_head_attention_forward, bypassing its out_proj module and
    using in_proj_weight directly: both are sites, as in its exported graph, with the same MACs."""
    torch.manual_seed(0)
    layer = nn.TransformerEncoderLayer(16, 2, 32, batch_first=True, dropout=0.0).eval()
    x = torch.randn(2, 5, 16)
    mod = mpsearch.sites(layer, x)
    expected, gm = _graph_weight_params(layer, x)
    assert {s.param for s in mod} == expected == {"self_attn.in_proj_weight", "self_attn.out_proj.weight",
                                                   "linear1.weight", "linear2.weight"}
    assert mod[0].macs == 5 * 48 * 16 and mod[1].macs == 5 * 16 * 16
    assert mpsearch.sites(gm, x) == mod


def test_gpt2_conv1d_and_tied_head_are_sites():
    """HF GPT-2: projections are Conv1D (addmm with the weight stored (in, out)); the head is tied to
    wte. Every weight matrix is a site, the head's MACs land on wte and its GEMM is one of its uses."""
    transformers = pytest.importorskip("transformers")
    cfg = transformers.GPT2Config(n_layer=1, n_embd=16, n_head=2, n_positions=16, vocab_size=50,
                                  bos_token_id=0, eos_token_id=0)
    torch.manual_seed(0)
    m = transformers.GPT2LMHeadModel(cfg).eval()
    ids = torch.randint(0, 50, (2, 6))
    got = mpsearch.sites(m, ids)
    weights = {n for n, p in m.named_parameters() if p.dim() == 2}
    assert {s.param for s in got} == weights  # wte (= lm_head), wpe, c_attn, attn c_proj, c_fc, mlp c_proj
    wte = next(s for s in got if s.name == "transformer.wte")
    assert wte.macs == 6 * 50 * 16 and wte.uses == (("linear", (6, 16), (6, 50)),)
    c_attn = next(s for s in got if s.name == "transformer.h.0.attn.c_attn")
    assert c_attn.kind == "linear" and c_attn.macs == 6 * 16 * 48


def test_a_tied_head_is_priced_as_gather_plus_gemm():
    """The cost model prices every use: tied = the untied twin's embedding + head."""
    from mpsearch import hardware_models
    from mpsearch.formats import get_choice

    class Tied(nn.Module):
        def __init__(self):
            super().__init__()
            self.emb = nn.Embedding(500, 64)

        def forward(self, ids):
            return torch.nn.functional.linear(self.emb(ids), self.emb.weight)

    class Untied(Tied):
        def __init__(self):
            super().__init__()
            self.head = nn.Linear(64, 500, bias=False)

        def forward(self, ids):
            return self.head(self.emb(ids))

    ids = torch.randint(0, 500, (2, 8))
    hw = hardware_models.get("h100", batch=8)
    (tied,) = mpsearch.sites(Tied(), ids)
    emb, head = mpsearch.sites(Untied(), ids)
    c = get_choice("bf16")
    assert hw.site_cost(tied, c)["latency"] == pytest.approx(
        hw.site_cost(emb, c)["latency"] + hw.site_cost(head, c)["latency"], rel=1e-12)
    assert hw.site_cost(tied, c)["latency"] > 2 * hw.site_cost(emb, c)["latency"]


def test_a_static_batch_export_takes_any_number_of_rows(digits, tmp_path):
    """Exported with a batch of 4 and no dynamic dim: after loading, 2 rows (mpsearch's probe) and 9
    rows (a calibration batch) run, equal to the module's outputs, and the sites match."""
    from mpsearch.loading import load_model

    x = digits.calibration["x"][:9]
    torch.export.save(torch.export.export(digits.model.eval(), (x[:4],)), str(tmp_path / "s.pt2"))
    gm = load_model(tmp_path / "s.pt2").module
    with torch.no_grad():
        for n in (2, 4, 9):
            assert torch.allclose(gm(x[:n]), digits.model(x[:n]), atol=1e-5)
    assert mpsearch.sites(gm, x[:2]) == mpsearch.sites(digits.model, x[:2])
