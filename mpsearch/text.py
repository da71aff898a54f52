"""Text and token ids as calibration data for language models: fixed-length windows with next-token labels.

`.txt` (the whole file) or `.jsonl` (one JSON object per line with a `text` field) is tokenized with
the checkpoint's own tokenizer; `.pt`/`.npz` holding an integer tensor (a 1-D token stream, or 2-D rows
that are cut into windows) are token ids. The stream is cut into non-overlapping windows of
`seq_len + 1` tokens: inputs are the first `seq_len`, labels the next token at each position. The first
`samples` windows calibrate; the next `samples` (when the text is long enough) are held out.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .errors import DataError

TEXT_SUFFIXES = (".txt", ".jsonl")


@dataclass
class TextData:
    calibration: dict  # {'x': {'input_ids': (N, T)}, 'y': (N, T)}
    test: dict | None  # the next windows of the same text, never seen by the planner
    tokens: int  # tokens in the whole stream


def read_text(path: Path) -> str:
    if path.suffix == ".jsonl":
        texts = []
        for i, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as e:
                raise DataError(f"{str(path)!r} line {i} is not JSON ({e.msg}); write one object per line") from e
            if not isinstance(obj, dict) or not isinstance(obj.get("text"), str):
                raise DataError(f"{str(path)!r} line {i} has no string 'text' field; write {{\"text\": \"...\"}}")
            texts.append(obj["text"])
        return "\n\n".join(texts)
    return path.read_text(encoding="utf-8", errors="replace")


def token_ids(obj) -> torch.Tensor | None:
    """A token-id tensor from a loaded .pt/.npz object, or None if it holds something else."""
    if isinstance(obj, dict):
        if "x" in obj and "y" in obj:  # already inputs and labels: the generic path handles it
            return None
        obj = obj.get("input_ids", obj.get("ids", obj.get("x")))
    t = torch.as_tensor(np.asarray(obj)) if obj is not None and not isinstance(obj, torch.Tensor) else obj
    if not isinstance(t, torch.Tensor) or t.is_floating_point() or t.dim() not in (1, 2):
        return None
    return t.long().reshape(-1)


def windows(ids: torch.Tensor, seq_len: int, samples: int, vocab: int | None = None) -> TextData:
    if seq_len < 1 or samples < 1:
        raise DataError(f"--seq-len and --samples must be positive (got {seq_len} and {samples})")
    if vocab is not None and ids.numel() and (int(ids.max()) >= vocab or int(ids.min()) < 0):
        raise DataError(f"token ids run from {int(ids.min())} to {int(ids.max())} but the model has {vocab} tokens; "
                        "tokenize with the checkpoint's tokenizer")
    w = seq_len + 1
    have = ids.numel() // w
    if have < 1:
        raise DataError(f"the data holds {ids.numel()} tokens, fewer than one window of --seq-len {seq_len} + 1; "
                        "give more text or a smaller --seq-len")
    rows = ids[: have * w].reshape(have, w)

    def split(r):
        return {"x": {"input_ids": r[:, :-1].contiguous()}, "y": r[:, 1:].contiguous()}

    cal = rows[:samples]
    test = rows[samples : 2 * samples]
    return TextData(split(cal), split(test) if len(test) else None, int(ids.numel()))


def load_lm_data(path: str | Path, tokenizer, seq_len: int, samples: int, vocab: int | None = None) -> TextData | None:
    """Text or token ids in `path` as windows for a language model; None if the file holds x/y data."""
    p = Path(path)
    if not p.is_file():
        raise DataError(f"data file {str(p)!r} does not exist; pass a .txt, .jsonl, .pt or .npz file")
    if p.suffix in TEXT_SUFFIXES:
        if tokenizer is None:
            raise DataError(f"{str(p)!r} is text but the model has no tokenizer; pass token ids (.pt/.npz of int64)")
        text = read_text(p)
        ids = torch.tensor(tokenizer(text, add_special_tokens=False)["input_ids"], dtype=torch.long)
        return windows(ids, seq_len, samples, vocab)
    from .data import load_data_file

    ids = token_ids(load_data_file(p) if p.suffix in (".pt", ".npz") else None)
    return None if ids is None else windows(ids, seq_len, samples, vocab)
