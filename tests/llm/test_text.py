"""Text and token ids as language-model calibration data."""

from __future__ import annotations

import json

import pytest
import torch

from mpsearch.errors import DataError
from mpsearch.examples.tiny_decoder import ALPHABET
from mpsearch.text import load_lm_data, windows


class CharTokenizer:
    def __call__(self, text, add_special_tokens=False):
        return {"input_ids": [ALPHABET.index(c) for c in text]}


def test_windows_shift_labels_and_hold_out_the_rest():
    ids = torch.arange(50)
    d = windows(ids, seq_len=4, samples=3)
    x, y = d.calibration["x"]["input_ids"], d.calibration["y"]
    assert x.tolist()[0] == [0, 1, 2, 3] and y.tolist()[0] == [1, 2, 3, 4]
    assert x.tolist()[1] == [5, 6, 7, 8]  # non-overlapping windows of seq_len + 1
    assert d.test["x"]["input_ids"].tolist()[0] == [15, 16, 17, 18]  # the next windows are held out
    assert d.test["x"]["input_ids"].shape == (3, 4)


def test_txt_and_jsonl_give_the_same_tokens(tmp_path):
    (tmp_path / "a.txt").write_text("hello world\n\nsecond line")
    (tmp_path / "a.jsonl").write_text(json.dumps({"text": "hello world"}) + "\n" + json.dumps({"text": "second line"}))
    a = load_lm_data(tmp_path / "a.txt", CharTokenizer(), 5, 2)
    b = load_lm_data(tmp_path / "a.jsonl", CharTokenizer(), 5, 2)
    assert torch.equal(a.calibration["x"]["input_ids"], b.calibration["x"]["input_ids"])
    assert "".join(ALPHABET[i] for i in a.calibration["x"]["input_ids"][0]) == "hello"


def test_bad_text_data_is_a_data_error(tmp_path):
    (tmp_path / "b.jsonl").write_text('{"txt": 1}\n')
    with pytest.raises(DataError, match="'text' field"):
        load_lm_data(tmp_path / "b.jsonl", CharTokenizer(), 4, 2)
    with pytest.raises(DataError, match="fewer than one window"):
        windows(torch.arange(3), 4, 1)
    with pytest.raises(DataError, match="model has 10 tokens"):
        windows(torch.arange(30), 4, 1, vocab=10)


def test_token_ids_file_and_xy_file(tmp_path):
    torch.save(torch.arange(40), tmp_path / "ids.pt")
    d = load_lm_data(tmp_path / "ids.pt", None, 9, 2)
    assert d.calibration["y"].tolist()[1] == list(range(11, 20))
    torch.save({"x": torch.zeros(2, 3), "y": torch.zeros(2)}, tmp_path / "xy.pt")
    assert load_lm_data(tmp_path / "xy.pt", None, 9, 2) is None  # not token ids: the generic loader's
