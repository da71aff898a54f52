"""A toy accelerator with round numbers, so every expected cost below is computed by hand."""

from __future__ import annotations

import copy

import pytest

from mpsearch.hardware_models import AnalyticalCostModel
from mpsearch.hardware_models._spec import parse_spec


def n(value, unit=""):
    return {"value": value, "unit": unit, "source": "test: round number"}


TOY = {
    "name": "toy",
    "title": "toy accelerator",
    "memory": {"bandwidth": n(1e12, "B/s"), "on_chip": n(1e6, "B"), "efficiency": n(0.5)},
    "overhead": {"launch": n(1e-6, "s")},
    "vector": {"rate": n(1e12, "op/s"), "dequant_ops": n(2), "tile_m": n(64), "op_energy": n(1e-12, "J/op")},
    "energy": {"dram_byte": n(1e-11, "J/B")},
    "paths": {
        "bf16": {
            "weights": ["bf16"],
            "acts": ["bf16"],
            "emulated_weights": ["int4", "int8"],
            "peak": n(100e12),
            "efficiency": n(1.0),
            "dequant_efficiency": n(0.5),
            "out_bits": n(16),
            "mac_energy": n(1e-12, "J"),
        },
        "int8": {
            "weights": ["int8"],
            "acts": ["int8"],
            "emulated_weights": ["int4"],
            "peak": n(200e12),
            "efficiency": n(0.8),
            "out_bits": n(32),
            "mac_energy": n(0.25e-12, "J"),
        },
    },
}


@pytest.fixture
def toy_raw():
    return copy.deepcopy(TOY)


@pytest.fixture
def toy(toy_raw):
    return AnalyticalCostModel(spec=parse_spec(toy_raw))
