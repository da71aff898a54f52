"""Sites that one fused runtime kernel runs, found from module names (Hugging Face conventions).

- `qkv`: `{p}.q_proj/k_proj/v_proj` (Llama, Mistral, Qwen, …) and `{p}.query/key/value` (BERT): vLLM
  loads them into one QKVParallelLinear, TensorRT-LLM into one fused GEMM.
- `gate_up`: `{p}.gate_proj/up_proj` (and MoE experts' `w1/w3`): one MergedColumnParallelLinear.
- `experts`: every site under `{p}.experts.{N}.…`: one fused MoE kernel per layer runs one format.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from ..errors import UsageError


def _siblings(members: tuple[str, ...]) -> Callable[[list[str]], list[list[str]]]:
    def rule(names: list[str]) -> list[list[str]]:
        groups: dict[str, list[str]] = {}
        for n in names:
            parent, _, leaf = n.rpartition(".")
            if leaf in members:
                groups.setdefault(parent, []).append(n)
        return [g for g in groups.values() if len(g) > 1]

    return rule


_EXPERT = re.compile(r"(.*\.experts)\.\d+\..+")


def _experts(names: list[str]) -> list[list[str]]:
    groups: dict[str, list[str]] = {}
    for n in names:
        m = _EXPERT.fullmatch(n)
        if m:
            groups.setdefault(m.group(1), []).append(n)
    return [g for g in groups.values() if len(g) > 1]


RULES: dict[str, Callable[[list[str]], list[list[str]]]] = {
    "qkv": _siblings(("q_proj", "k_proj", "v_proj", "query", "key", "value")),
    "gate_up": _siblings(("gate_proj", "up_proj", "w1", "w3")),
    "experts": _experts,
}


def tie_groups(rules: tuple[str, ...] | list[str], names: list[str]) -> list[list[str]]:
    """The groups of site names the named rules tie, merged where they overlap (e.g. experts ⊃ gate_up)."""
    groups: list[list[str]] = []
    for r in rules:
        if r not in RULES:
            raise UsageError(f"unknown tie rule {r!r} in a target profile; use one of {', '.join(RULES)}")
        groups += RULES[r](names)
    parent = {n: n for g in groups for n in g}

    def find(n: str) -> str:
        while parent[n] != n:
            parent[n] = parent[parent[n]]
            n = parent[n]
        return n

    for g in groups:
        for n in g[1:]:
            parent[find(n)] = find(g[0])
    merged: dict[str, list[str]] = {}
    for n in names:
        if n in parent:
            merged.setdefault(find(n), []).append(n)
    return list(merged.values())
