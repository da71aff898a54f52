"""Plug-in settings from the command line: `KEY=VALUE`, the value kept as text.

The plug-in that receives it coerces the text to the setting's declared type (`mpsearch.params`), so
`max_probes=abc` fails naming the setting, its type and the valid ones, and `study_name=007` stays text.
"""

from __future__ import annotations

import argparse


def key_value(text: str) -> tuple[str, str]:
    """argparse type for `--search-option` / `--estimator-option KEY=VALUE`."""
    key, eq, value = text.partition("=")
    if not eq or not key.strip():
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE (e.g. aggregate=max), got {text!r}")
    return key.strip().replace("-", "_"), value.strip()
