"""Searcher settings from the command line: `KEY=VALUE` with numbers and booleans typed."""

from __future__ import annotations

import argparse


def parse_value(text: str):
    """'80' -> 80, '0.5' -> 0.5, 'true' -> True, 'none' -> None, anything else stays a string."""
    low = text.strip().lower()
    if low in ("true", "yes", "on"):
        return True
    if low in ("false", "no", "off"):
        return False
    if low in ("none", "null"):
        return None
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    return text.strip()


def key_value(text: str) -> tuple[str, object]:
    """argparse type for `--search-option` / `--estimator-option KEY=VALUE`."""
    key, eq, value = text.partition("=")
    if not eq or not key.strip():
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE (e.g. aggregate=max), got {text!r}")
    return key.strip().replace("-", "_"), parse_value(value)
