"""A Hugging Face model exported to `.pt2` loads in a fresh process: its ModelOutput type is made known.

The model is a Linear returning transformers' own `SequenceClassifierOutput`, which is what makes an
exported BERT fail to load elsewhere; a real BERT export would only make the test slower."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch
from torch import nn

modeling_outputs = pytest.importorskip("transformers.modeling_outputs")


class Classifier(nn.Module):
    def __init__(self):
        super().__init__()
        self.head = nn.Linear(4, 3)

    def forward(self, x):
        return modeling_outputs.SequenceClassifierOutput(logits=self.head(x))


def test_hf_output_pt2_loads_in_a_fresh_process(tmp_path):
    torch.manual_seed(0)
    model, x = Classifier().eval(), torch.randn(2, 4)
    torch.export.save(torch.export.export(model, (x,)), str(tmp_path / "m.pt2"))
    torch.save(x, tmp_path / "x.pt")
    code = ("import sys, torch; from mpsearch.loading import load_model; "
            f"m = load_model({str(tmp_path / 'm.pt2')!r}).module; "
            f"out = m(torch.load({str(tmp_path / 'x.pt')!r})); "
            "print(type(out).__name__); torch.save(out.logits, sys.argv[1])")
    r = subprocess.run([sys.executable, "-c", code, str(tmp_path / "out.pt")], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stdout.strip() == "SequenceClassifierOutput"
    torch.testing.assert_close(torch.load(tmp_path / "out.pt"), model(x).logits)
    assert "not registered" not in r.stderr


def test_unregistered_output_type_is_one_line(tmp_path, capsys):
    """A type outside the trusted libraries is not imported; torch's refusal becomes one line."""
    from mpsearch.cli import main

    arch = tmp_path / "m.pt2"
    torch.export.save(torch.export.export(Classifier().eval(), (torch.randn(2, 4),)), str(arch))
    import zipfile

    with zipfile.ZipFile(arch) as z:  # rename the type to one nobody registered
        entries = {i.filename: z.read(i) for i in z.infolist()}
    with zipfile.ZipFile(arch, "w") as z:
        for name, data in entries.items():
            z.writestr(name, data.replace(b"transformers.modeling_outputs.", b"mylib.outputs."))
    assert main(["sites", str(arch)]) == 1
    err = capsys.readouterr().err.strip()
    assert "mylib.outputs.SequenceClassifierOutput" in err and err.count("\n") == 0, err
