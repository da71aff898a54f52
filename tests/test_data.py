"""Every accepted form of calibration data normalizes to the same batches."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mpsearch.data import as_data, check_fits
from mpsearch.errors import DataError


def test_forms_agree(tmp_path):
    x, y = torch.randn(10, 3), torch.randint(0, 2, (10,))
    np.savez(tmp_path / "d.npz", x=x.numpy(), y=y.numpy())
    torch.save({"x": x, "y": y}, tmp_path / "d.pt")
    loader = [(x[:4], y[:4]), (x[4:], y[4:])]
    forms = [(x, y), {"x": x, "y": y}, loader, tmp_path / "d.npz", str(tmp_path / "d.pt")]
    for form in forms:
        d = as_data(form, batch_size=4)
        assert d.labelled and d.num_samples == 10
        assert torch.equal(torch.cat([b.x for b in d]), x) and torch.equal(torch.cat([b.y for b in d]), y)
    unlabelled = as_data(x)
    assert not unlabelled.labelled and unlabelled.num_samples == 10


def test_digest_depends_on_content():
    x = torch.randn(8, 3)
    assert as_data(x).digest() == as_data(x.clone()).digest()
    assert as_data(x).digest() != as_data(x + 1).digest()


@pytest.mark.parametrize("bad, match", [
    ({"inputs": torch.zeros(2)}, "needs 'x'"),
    ((torch.zeros(4, 3), torch.zeros(3)), "4 samples but y has 3"),
    (42, "cannot use int"),
])
def test_bad_forms(bad, match):
    with pytest.raises(DataError, match=match):
        as_data(bad)


def test_missing_and_corrupt_files(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        as_data(tmp_path / "nope.pt")
    (tmp_path / "bad.npz").write_bytes(b"garbage")
    with pytest.raises(DataError, match="cannot read"):
        as_data(tmp_path / "bad.npz")


def test_shape_and_label_checks(digits):
    with pytest.raises(DataError, match=r"input shape \(2, 3, 32, 32\) does not fit"):
        check_fits(digits.model, as_data(torch.zeros(2, 3, 32, 32)))
    with pytest.raises(DataError, match="labels run up to 12"):
        check_fits(digits.model, as_data((digits.calibration["x"][:4], torch.tensor([0, 1, 2, 12]))))


def test_a_two_item_list_of_inputs_and_labels_is_one_labelled_set():
    x, y = torch.randn(6, 3), torch.arange(6)
    d = as_data([x, y])
    assert d.labelled and d.num_samples == 6 and torch.equal(d.batches[0].x, x) and torch.equal(d.batches[0].y, y)
    two = as_data([x, x + 1])  # two input batches of the same row shape stay two batches
    assert len(two) == 2 and not two.labelled and two.num_samples == 12


def test_sample_is_a_seeded_random_subset_not_the_head():
    x = torch.arange(100, dtype=torch.float32).reshape(-1, 1)
    d = as_data({"x": x, "y": torch.arange(100) // 25}, batch_size=16)
    s = d.sample(20, seed=1)
    rows = torch.cat([b.x for b in s]).reshape(-1)
    assert s.num_samples == 20 and len(set(rows.tolist())) == 20 and rows.max() >= 25
    assert torch.equal(rows, torch.cat([b.x for b in d.sample(20, seed=1)]).reshape(-1))
    assert d.sample(100) is d and d.sample(500) is d
