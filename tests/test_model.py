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
