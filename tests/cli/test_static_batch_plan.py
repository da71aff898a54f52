"""The digits CNN exported with a static batch of 4 plans from the CLI at 3 and 4 bits on the exact
Gauss-Newton path (not Hutchinson's probes: the estimate re-cuts the data into batches of 4, so each
graph op runs once per forward), and its plans measure at least as well as uniform INT3 / INT4 on the
held-out split."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mpsearch.apply import apply
from mpsearch.cli import main
from mpsearch.loading import load_model
from mpsearch.model import fingerprint, sites
from mpsearch.plan import Plan


def _test_loss(model, x, y) -> float:
    with torch.no_grad():
        return float(torch.nn.functional.cross_entropy(model(x), y))


@pytest.fixture(scope="module")
def static_export(tmp_path_factory):
    from mpsearch.examples import load_example

    ex = load_example("digits-cnn")
    d = tmp_path_factory.mktemp("static")
    torch.export.save(torch.export.export(ex.model.eval(), (ex.calibration["x"][:4],)), str(d / "model.pt2"))
    np.savez(d / "calibration.npz", x=ex.calibration["x"].numpy(), y=ex.calibration["y"].numpy())
    return d, ex.test["x"], ex.test["y"]


@pytest.mark.parametrize("bits", [3, 4])
def test_static_batch_pt2_plans_from_the_cli_and_beats_uniform(static_export, bits, capsys):
    d, x, y = static_export
    out = d / f"plan{bits}.json"
    rc = main(["plan", str(d / "model.pt2"), "--data", str(d / "calibration.npz"), "--budget", f"{bits}bits",
               "--max-evals", "20", "-o", str(out)])
    assert rc == 0, capsys.readouterr().err[-2000:]
    plan = Plan.load(out)
    assert plan.provenance["estimator_settings"]["method"] == "ggn"  # the fast exact path, not probes
    gm = load_model(d / "model.pt2").module
    uniform = Plan({s.name: f"int{bits}" for s in sites(gm)}, fingerprint(gm))
    got, base = _test_loss(apply(gm, plan), x, y), _test_loss(apply(gm, uniform), x, y)
    assert plan.totals["avg_bits"] <= bits
    print(f"bits={bits} plan test CE {got:.4f} vs uniform int{bits} {base:.4f}")
    assert got <= base, (got, base)


def test_a_copy_of_a_static_batch_pt2_takes_any_rows_and_data_rebatches(static_export):
    """`apply` quantizes a deep copy: GraphModule's copy drops the padding forward unless it is re-added."""
    import copy

    from mpsearch.data import as_data
    from mpsearch.static_batch import fit_batches

    d, x, y = static_export
    gm = load_model(d / "model.pt2").module
    twin = copy.deepcopy(gm)
    with torch.no_grad():
        torch.testing.assert_close(twin(x[:9]), gm(x[:9]))
    data = as_data((x[:11], y[:11]), batch_size=5)
    cut = fit_batches(gm, data)
    assert [b.size for b in cut] == [4, 4] and torch.equal(torch.cat([b.y for b in cut]), y[:8])
    assert fit_batches(copy.deepcopy(torch.nn.Linear(2, 2)), data) is data
