"""Measurements of quantized models, remembered by what determines them.

The guard measures the searched plan and the uniform plans at every budget; across the budgets of one
model (a Pareto sweep, `plan` with several `--budget`s, a study) the same uniform plans come back.
A measurement is keyed by the model's weights (its fingerprint), the data's content digest, the
metrics, the assignment and the activation parameters it uses, so a changed model or data set
never reuses a stale number. Bounded (least recently used first out).
"""

from __future__ import annotations

import json
from collections import OrderedDict
from collections.abc import Callable

MAX_ENTRIES = 1024
_MEMO: OrderedDict[tuple, dict[str, float]] = OrderedDict()


def measure_key(model_fp: str, data_digest: str, metrics: list[str], assign: dict[str, str], acts: dict | None,
                rounding: str = "rtn") -> tuple:
    used = {s: (acts or {}).get(s, {}).get(f.partition(":")[2]) for s, f in assign.items() if ":" in f}
    return (model_fp, data_digest, tuple(metrics), tuple(sorted(assign.items())),
            json.dumps(used, sort_keys=True, default=str), rounding)


def remembered(key: tuple, run: Callable[[], dict[str, float]]) -> dict[str, float]:
    """`run()`'s result for `key`, computed once."""
    if key in _MEMO:
        _MEMO.move_to_end(key)
        return dict(_MEMO[key])
    out = run()
    _MEMO[key] = dict(out)
    while len(_MEMO) > MAX_ENTRIES:
        _MEMO.popitem(last=False)
    return out


def clear() -> None:
    _MEMO.clear()
