"""Fixtures for the search tests: real small models trained deterministically, and their tables."""

from __future__ import annotations

import pytest

import mpsearch
from mpsearch import hardware_models
from mpsearch.data import as_data
from mpsearch.examples import load_example
from mpsearch.examples.digits_mlp import load as load_mlp
from mpsearch.formats import parse_choices
from mpsearch.search import SearchProblem
from mpsearch.sensitivity.pairwise import MeasuredLoss
from tests.conftest import single_thread

MLP_FORMATS = ["int2", "int3", "int4", "int8"]


@pytest.fixture(autouse=True, scope="package")
def one_thread():
    with single_thread():
        yield


@pytest.fixture(scope="session")
def mlp():
    """The 6-layer digits MLP: 4 formats per layer gives 4,096 assignments, cheap to enumerate."""
    return load_mlp()


@pytest.fixture(scope="session")
def mlp_tables(mlp):
    """(site names, Hessian Ω + cost table, total weights) for the MLP."""
    data = as_data(mlp.calibration)
    site_list = mpsearch.sites(mlp.model, data.first_x)
    sens = mpsearch.sensitivity(mlp.model, data, formats=MLP_FORMATS, site_list=site_list, seed=0, max_probes=32)
    costs = hardware_models.cost_table(site_list, parse_choices(MLP_FORMATS, MLP_FORMATS))
    return [s.name for s in site_list], sens.frame.merge(costs, on=["site", "format"]), \
        sum(s.numel for s in site_list)


@pytest.fixture
def mlp_problem(mlp, mlp_tables):
    """A fresh problem at `avg_bits` with a fresh measured loss (so measurement counts start at zero)."""
    names, table, weights = mlp_tables

    def make(avg_bits: float, **kw) -> SearchProblem:
        return SearchProblem(table, {"bits": avg_bits * weights}, evaluate=MeasuredLoss(mlp.model, mlp.calibration),
                             **kw)

    return make


@pytest.fixture(scope="session")
def cnn():
    return load_example("digits-cnn")


@pytest.fixture(scope="session")
def cnn_sens(cnn):
    """One cheap Hessian table for the digits CNN, reused by every budget."""
    return mpsearch.sensitivity(cnn.model, cnn.calibration, seed=0, max_probes=12)
