"""Every ```python block of README.md runs as written, each in a fresh namespace and folder."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"
BLOCKS = re.findall(r"```python\n(.*?)```", README.read_text(encoding="utf-8"), re.S)


def test_readme_has_python_snippets():
    assert len(BLOCKS) >= 4


@pytest.mark.parametrize("i", range(len(BLOCKS)), ids=[f"block{i}" for i in range(len(BLOCKS))])
def test_readme_snippet_runs(i, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MPSEARCH_CACHE", str(tmp_path / "cache"))
    exec(compile(BLOCKS[i], f"README.md block {i}", "exec"), {"__name__": f"readme_{i}"})


def test_every_estimator_in_help_is_described():
    """`--help` lists the registry's names; each one is in the README's estimator table."""
    from mpsearch.sensitivity import estimator_names

    table = README.read_text(encoding="utf-8").split("| estimator | Ω(site, f) |", 1)[1].split("\n\n", 1)[0]
    assert [n for n in estimator_names() if f"`{n}`" not in table] == []
