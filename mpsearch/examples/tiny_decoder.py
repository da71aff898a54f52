"""Third bundled real model: a small character-level Llama-style decoder trained on Python's own sources.

The checkpoint (`tiny_decoder/`: config.json, model.safetensors, tokenizer.json) is an ordinary Hugging
Face directory, so it also exercises `mpsearch plan DIR`. It was trained by `train_tiny_decoder.py`
(deterministic) on the source text of a fixed list of standard-library modules; the held-out text is
other modules' sources, which the model never saw. The objective is next-token cross-entropy; the
comparison also reports perplexity, mean and 99.9th-percentile token KL to the FP model, and top-1
agreement.
"""

from __future__ import annotations

import importlib
import inspect
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

HERE = Path(__file__).resolve().parent / "tiny_decoder"
SEQ_LEN = 128
N_CAL = 32
# held out: every full window of HELDOUT_MODULES' sources (724 windows, 92,672 tokens on Python 3.11), not
# a sample of them: near FP, perplexity differences between plans are ~0.01, and 64 windows (the first
# module alone, once the default here) left them within one paired standard error
N_TEST = None
# characters the tokenizer knows: printable ASCII and newline (everything else becomes "?")
ALPHABET = "\n" + "".join(chr(c) for c in range(32, 127))
TRAIN_MODULES = (
    "argparse", "ast", "asyncio.base_events", "calendar", "collections", "configparser", "csv",
    "dataclasses", "datetime", "decimal", "difflib", "email.message", "enum", "fractions", "functools",
    "gettext", "glob", "gzip", "heapq", "http.client", "inspect", "ipaddress", "json.decoder", "locale",
    "logging", "mailbox", "mimetypes", "os", "pathlib", "pickle", "pprint", "queue", "random", "shlex",
    "shutil", "smtplib", "socket", "statistics", "string", "subprocess", "tarfile", "tempfile",
    "threading", "tokenize", "traceback", "typing", "unittest.case", "urllib.parse", "uuid", "warnings",
    "zipfile",
)
HELDOUT_MODULES = ("textwrap", "bisect", "contextlib", "copy", "fnmatch", "getopt", "hmac", "netrc", "sched")


def module_text(names: tuple[str, ...]) -> str:
    """The concatenated source of `names` (skipping any this Python lacks), in ASCII."""
    parts = []
    for name in names:
        try:
            parts.append(inspect.getsource(importlib.import_module(name)))
        except (ImportError, OSError, TypeError):
            continue
    text = "\n".join(parts)
    return "".join(c if c in ALPHABET else "?" for c in text)


def encode(text: str) -> torch.Tensor:
    index = {c: i for i, c in enumerate(ALPHABET)}
    return torch.tensor([index.get(c, index["?"]) for c in text], dtype=torch.long)


def sequences(ids: torch.Tensor, seq_len: int, n: int | None, offset: int = 0) -> dict:
    """`n` (None: as many as fit) non-overlapping windows of seq_len+1 tokens, as inputs and next-token labels."""
    if n is None:
        n = max(1, (ids.numel() - offset) // (seq_len + 1))
    need = offset + n * (seq_len + 1)
    if ids.numel() < need:
        raise ValueError(f"text too short: {ids.numel()} tokens, need {need}")
    w = ids[offset:need].reshape(n, seq_len + 1)
    return {"x": {"input_ids": w[:, :-1].contiguous()}, "y": w[:, 1:].contiguous()}


def save_tokenizer(out: str | Path) -> None:
    """A character tokenizer (BPE with no merges) that the `transformers` loaders read like any other."""
    from tokenizers import Tokenizer, models
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE(vocab={c: i for i, c in enumerate(ALPHABET)}, merges=[], unk_token="?"))
    PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="?").save_pretrained(str(out))


@dataclass
class DecoderExample:
    model: nn.Module
    calibration: dict
    test: dict
    name: str = "tiny-decoder"
    objective: str = "cross_entropy"
    metrics: tuple[str, ...] = ("cross_entropy", "perplexity", "kl", "kl_p999", "top1_agreement")


def load_model() -> nn.Module:
    from ..hf import load_pretrained

    return load_pretrained(HERE)


def load() -> DecoderExample:
    """The model, calibration windows from its training text, test windows: all of the held-out modules' text."""
    cal = sequences(encode(module_text(TRAIN_MODULES)), SEQ_LEN, N_CAL)
    test = sequences(encode(module_text(HELDOUT_MODULES)), SEQ_LEN, N_TEST)
    return DecoderExample(load_model(), cal, test)
