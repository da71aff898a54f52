"""A tiny trained CNN (BatchNorm included, so a forward in train mode would show in its buffers) as an
nn.Module and as its `.pt2`, shared by every contract check."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import mpsearch
from mpsearch.data import as_data
from mpsearch.formats import parse_choices
from mpsearch.loading import load_model
from mpsearch.objectives import get_objective

from ..conftest import single_thread
from .checks import ModelCase


class TinyCNN(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3, padding=1)
        self.bn = nn.BatchNorm2d(4)
        self.fc1 = nn.Linear(4 * 4 * 4, 12)
        self.fc2 = nn.Linear(12, 3)

    def forward(self, x):
        h = F.max_pool2d(F.relu(self.bn(self.conv(x))), 2)
        return self.fc2(F.relu(self.fc1(h.flatten(1))))


@pytest.fixture(autouse=True, scope="package")
def _one_thread():
    with single_thread():
        yield


@pytest.fixture(scope="package")
def trained():
    g = torch.Generator().manual_seed(0)
    torch.manual_seed(0)
    x = torch.randn(48, 1, 8, 8, generator=g)
    y = (x[:, 0, :4].mean((1, 2)) > 0).long() + (x[:, 0, 4:, 4:].mean((1, 2)) > 0.1).long()
    model = TinyCNN()
    opt = torch.optim.Adam(model.parameters(), lr=0.03)
    for _ in range(120):
        opt.zero_grad()
        F.cross_entropy(model(x), y).backward()
        opt.step()
    return model.eval(), x, y


CHOICES = "int2,int8,int4:int8"  # a weight-only low, a high, and one that quantizes the input too


def _case(kind: str, model: nn.Module, x, y) -> ModelCase:
    data = as_data((x, y))
    return ModelCase(kind, model, data, mpsearch.sites(model, x[:2]), parse_choices(CHOICES, []),
                     get_objective("cross_entropy"))


@pytest.fixture(scope="package")
def module_case(trained) -> ModelCase:
    model, x, y = trained
    return _case("module", model, x, y)


@pytest.fixture(scope="package")
def pt2_case(trained, tmp_path_factory) -> ModelCase:
    model, x, y = trained
    ep = torch.export.export(model, (x[:2],), dynamic_shapes=({0: torch.export.Dim("batch")},))
    path = tmp_path_factory.mktemp("pt2") / "tiny.pt2"
    torch.export.save(ep, str(path))
    return _case("pt2", load_model(path).module, x, y)
