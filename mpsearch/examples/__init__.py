"""Bundled examples (real data, weights shipped in the package, no downloads)."""

from __future__ import annotations

from ..errors import UsageError

EXAMPLES = {"digits-cnn": "mpsearch.examples.digits", "digits-seq": "mpsearch.examples.digits_seq",
            "minilm-l6": "mpsearch.examples.minilm", "tiny-decoder": "mpsearch.examples.tiny_decoder"}


def load_example(name: str):
    import importlib

    if name not in EXAMPLES:
        raise UsageError(f"unknown example {name!r}; choose one of {', '.join(EXAMPLES)}")
    return importlib.import_module(EXAMPLES[name]).load()
