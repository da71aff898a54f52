"""Shared fixtures: the bundled digits example (real trained weights, real data)."""

import pytest

from mpsearch.examples import load_example


@pytest.fixture
def digits():
    """A fresh copy of the digits CNN with its calibration and test splits."""
    return load_example("digits-cnn")
