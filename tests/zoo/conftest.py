"""The zoo's exports, made once per session: each model as a module and as a `.pt2` with a static batch
(4) and with a dynamic one, saved and loaded back as a user's file would be."""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import pytest
import torch

from .models import ZooModel, build

FORMS = ("module", "static", "dynamic")


@dataclass
class Entry:
    zoo: ZooModel
    programs: dict  # form -> ExportedProgram (as loaded back)
    paths: dict     # form -> .pt2 path


class _Zoo:
    def __init__(self, root):
        self.root, self.entries = root, {}

    def __call__(self, name: str) -> Entry:
        if name not in self.entries:
            from mpsearch.loading import load_model

            zm = build(name)
            progs, paths = {}, {}
            dyn = {"static": None, "dynamic": ({0: torch.export.Dim("batch", min=2, max=64)},)}
            for form, shapes in dyn.items():
                path = self.root / f"{name}-{form}.pt2"
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    torch.export.save(torch.export.export(zm.model, (zm.x,), dynamic_shapes=shapes), str(path))
                progs[form], paths[form] = load_model(path).program, path
            self.entries[name] = Entry(zm, progs, paths)
        return self.entries[name]


@pytest.fixture(scope="session")
def zoo(tmp_path_factory):
    return _Zoo(tmp_path_factory.mktemp("zoo"))


def model_in(entry: Entry, form: str):
    """A fresh model of `form`: the nn.Module itself, or the `.pt2` loaded as mpsearch loads it."""
    import copy

    from mpsearch.loading import load_model

    return copy.deepcopy(entry.zoo.model) if form == "module" else load_model(entry.paths[form]).module


def labelled(entry: Entry, n: int = 8):
    """n inputs (the example batch repeated) and labels in range, for estimators and measurements."""
    x = entry.zoo.x
    reps = -(-n // x.shape[0])
    xs = torch.cat([x] * reps)[:n]
    if xs.is_floating_point():
        xs = xs + 0.1 * torch.randn(xs.shape, generator=torch.Generator().manual_seed(1))
    y = torch.randint(0, entry.zoo.classes, (n,), generator=torch.Generator().manual_seed(2))
    return xs, y
