"""`train_digits` reproduces what ships, bit for bit.

The full 40-epoch retrain takes about two minutes with the kernels pinned, too long for the suite, so it
runs when MPSEARCH_SLOW=1 (`python -m mpsearch.examples.train_digits --check` does the same by hand). The
suite runs the same code for 4 steps and compares with recorded hashes, which a different kernel (the
cause of the old |Δw| ≈ 0.8) or a change to the training code breaks: unpinned, the same 4 steps give
other bytes with torch's AVX-512 kernels and others again with its AVX2 ones.
"""

from __future__ import annotations

import os

import pytest

from mpsearch.examples import train_digits
from mpsearch.examples.digits import HERE

FOUR_STEPS = {  # sha256 of `--epochs 1 --steps 4` (torch 2.13, x86-64): the pinned run's bytes
    "digits_cnn.safetensors": "e99f4d19cad607c74b52e00e404a4c15dbbd48fe62a68bb97f28a0ec0bbdefb9",
    "digits_seq.safetensors": "d95a01b374a0aafc1b39e4c30f6ec2d08084e04dc959dc17aae5b4299191fab0",
    "digits_split.npz": train_digits.SHIPPED["digits_split.npz"],  # the split does not depend on training
}


def test_the_recorded_hashes_are_the_shipped_files():
    for name, digest in train_digits.SHIPPED.items():
        assert train_digits.sha256(HERE / name) == digest, f"{name} changed without updating SHIPPED"


@pytest.mark.parametrize("model", ["cnn", "seq"])
def test_a_short_run_writes_the_recorded_bytes_with_pinned_kernels(model, tmp_path, capfd):
    assert train_digits.main(["--model", model, "--out", str(tmp_path), "--epochs", "1", "--steps", "4"]) == 0
    assert "(kernels: DEFAULT)" in capfd.readouterr().out  # the child ran torch's baseline kernels
    written = sorted(p.name for p in tmp_path.iterdir())
    assert written == (["digits_cnn.safetensors", "digits_split.npz"] if model == "cnn"
                       else ["digits_seq.safetensors"])
    for name in written:
        assert train_digits.sha256(tmp_path / name) == FOUR_STEPS[name], name


@pytest.mark.skipif(os.environ.get("MPSEARCH_SLOW") != "1", reason="a full retrain (~2 min); MPSEARCH_SLOW=1 runs it")
@pytest.mark.parametrize("model", ["cnn", "seq"])
def test_a_full_retrain_reproduces_the_shipped_files(model, capfd):
    assert train_digits.main(["--model", model, "--check"]) == 0
    assert "identical to the shipped files" in capfd.readouterr().out
