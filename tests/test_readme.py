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
