"""`train_digits` is deterministic: two runs write the same bytes (one epoch keeps the test short)."""

from __future__ import annotations

import torch

from mpsearch.examples import train_digits


def test_two_runs_write_identical_files(tmp_path, capsys):
    det, threads = torch.are_deterministic_algorithms_enabled(), torch.get_num_threads()
    try:
        for run in ("a", "b"):
            train_digits.main(["--out", str(tmp_path / run), "--epochs", "1"])
    finally:  # main() sets process-wide state for reproducibility; give the other tests theirs back
        torch.use_deterministic_algorithms(det)
        torch.set_num_threads(threads)
    for name in ("digits_cnn.safetensors", "digits_split.npz"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()
    assert capsys.readouterr().out.count("test accuracy") == 2
    import numpy as np

    from mpsearch.examples.digits import HERE

    made, shipped = np.load(tmp_path / "a" / "digits_split.npz"), np.load(HERE / "digits_split.npz")
    assert sorted(made.files) == sorted(shipped.files)
    for k in made.files:  # the split does not depend on training: it must be the shipped one
        assert np.array_equal(made[k], shipped[k])
