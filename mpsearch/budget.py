"""Budgets: constraints on a plan's totals, parsed from strings like `4MB`, `4.5bits`, `30%`, `latency=2ms`.

A budget applies to the whole model. Parameters that are not quantizable sites (biases, norms) stay
16-bit and count as a fixed cost; `resolve` turns model-level budgets into limits on the per-site
cost columns that the search sums.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field

from .errors import BudgetError

# metric -> the cost-table column the search constrains
COLUMNS = {"memory": "bytes", "bits": "bits", "latency": "latency", "energy": "energy", "bops": "bops"}
_ALIASES = {"memory": "memory", "size": "memory", "bytes": "memory", "mem": "memory", "bits": "bits",
            "avg_bits": "bits", "latency": "latency", "energy": "energy", "bops": "bops"}
_BYTES = {"b": 1, "kb": 1e3, "mb": 1e6, "gb": 1e9, "tb": 1e12, "kib": 2**10, "mib": 2**20, "gib": 2**30,
          "tib": 2**40}
_SECONDS = {"s": 1, "ms": 1e-3, "us": 1e-6, "µs": 1e-6, "ns": 1e-9}
_JOULES = {"j": 1, "mj": 1e-3, "uj": 1e-6, "µj": 1e-6, "nj": 1e-9, "pj": 1e-12}
_COUNT = {"": 1, "k": 1e3, "m": 1e6, "g": 1e9, "t": 1e12, "p": 1e15}
_UNITS = {"memory": _BYTES, "latency": _SECONDS, "energy": _JOULES, "bops": _COUNT, "bits": {"": 1, "bits": 1,
                                                                                             "bit": 1}}
_NUM = r"(\d+(?:\.\d*)?(?:e[+-]?\d+)?|\.\d+)"
_EXAMPLES = "e.g. 4MB, 900KiB, 4.5bits, 30%, latency=2ms, energy=5mJ, bops=2G"


@dataclass(frozen=True)
class Budget:
    """`value` in base units (bytes, bits per weight, seconds, joules, bit-operations), or a fraction of
    the 16-bit model's total when `relative`."""

    metric: str
    value: float
    relative: bool = False
    text: str = field(default="", compare=False, repr=False)  # as the user wrote it ("" when built in code)

    @classmethod
    def parse(cls, text: str | Budget) -> Budget:
        if isinstance(text, Budget):
            return text
        raw = str(text)
        s = raw.strip().lower().replace(" ", "")
        metric, eq, val = s.partition("=")
        if eq:
            if metric not in _ALIASES:
                raise BudgetError(f"unknown budget metric {metric!r} in {raw!r}; use one of "
                                  f"memory, bits, latency, energy, bops ({_EXAMPLES})")
            metric = _ALIASES[metric]
        else:
            val = s
            m = re.fullmatch(_NUM + r"(bits?)", val)
            metric = "bits" if m else "memory"
        m = re.fullmatch(_NUM + "%", val)
        if m:
            return cls._checked(metric, float(m.group(1)) / 100, True, raw)
        m = re.fullmatch(_NUM + r"([a-zµ]*)", val)
        if m and metric == "memory" and not m.group(2):
            n = m.group(1)
            raise BudgetError(f"budget {raw!r} has no unit; write e.g. {n}MB, {n}bits or {n}%")
        if m and metric == "memory" and m.group(2).endswith("b"):
            cls._refuse_bits(raw, m.group(1), m.group(2))
        if m and m.group(2) in _UNITS[metric]:
            return cls._checked(metric, float(m.group(1)) * _UNITS[metric][m.group(2)], False, raw)
        units = ", ".join(u for u in _UNITS[metric] if u) or "no unit"
        raise BudgetError(f"cannot parse budget {raw!r}; {metric} takes {units} or a % ({_EXAMPLES})")

    @staticmethod
    def _refuse_bits(raw: str, num: str, unit: str) -> None:
        """A lowercase b is a bit (4Mb = 0.5MB); memory budgets are bytes, so a bit unit is refused rather
        than read as bytes (a silent 8x) or guessed."""
        typed = re.search(r"([a-zA-Zµ]*)\s*$", raw).group(1)
        if typed.endswith("b") and unit in _BYTES:
            fix = f"{num}{typed[:-1].upper() if len(typed) > 1 and typed[-2] != 'i' else typed[:-1]}B"
            if len(typed) == 3:  # kib, Mib -> KiB, MiB
                fix = f"{num}{typed[0].upper()}iB"
            raise BudgetError(f"budget {raw!r} is in bits (a lowercase b is a bit); memory budgets are in bytes: "
                              f"write {fix} for bytes, or divide by 8")

    @classmethod
    def _checked(cls, metric: str, value: float, relative: bool, raw: str) -> Budget:
        if not math.isfinite(value):
            raise BudgetError(f"budget {raw!r} is not a finite number; give a size below the 16-bit model's")
        if value <= 0:
            raise BudgetError(f"budget {raw!r} must be positive")
        if relative and value > 1:
            raise BudgetError(f"budget {raw!r} is above the 16-bit model (100%): nothing would be quantized; "
                              "give less than 100%, e.g. 30%")
        if metric == "bits" and not relative and value > 16:
            raise BudgetError(f"budget {raw!r} is above the 16 bits/weight of the unquantized sites; give fewer bits, "
                              "e.g. 4.5bits")
        return cls(metric, value, relative, raw.strip())

    @property
    def column(self) -> str:
        return COLUMNS[self.metric]

    def __str__(self) -> str:
        if self.relative:
            return f"{self.metric}={self.value * 100:.12g}%"
        if self.metric == "bits":
            return f"{self.value:.12g}bits"
        if self.metric == "memory":
            for unit, f in (("GB", 1e9), ("MB", 1e6), ("KB", 1e3)):
                if self.value >= f:
                    return f"{self.value / f:.12g}{unit}"
            return f"{self.value:.12g}B"
        return f"{self.metric}={format_metric(self.metric, self.value, digits=12)}"


def format_metric(metric: str, v: float, digits: int = 4) -> str:
    """Human units: 3.2 MB, 4.37 bits, 1.8 ms, 5.1 mJ, 2.3 GBOPs, to `digits` significant digits (a budget
    is written with 12, so the plan file keeps the number the user asked for)."""
    if metric in ("memory", "bytes"):
        for unit, f in (("GB", 1e9), ("MB", 1e6), ("KB", 1e3)):
            if abs(v) >= f:
                return f"{v / f:.{digits}g}{unit}"
        return f"{v:.0f}B"
    if metric == "bits":
        return f"{v:.3f}bits"
    if metric == "latency":
        for unit, f in (("s", 1), ("ms", 1e-3), ("us", 1e-6)):
            if abs(v) >= f:
                return f"{v / f:.{digits}g}{unit}"
        return f"{v / 1e-9:.{digits}g}ns"
    if metric == "energy":
        for unit, f in (("J", 1), ("mJ", 1e-3), ("uJ", 1e-6)):
            if abs(v) >= f:
                return f"{v / f:.{digits}g}{unit}"
        return f"{v / 1e-9:.{digits}g}nJ"
    for unit, f in (("T", 1e12), ("G", 1e9), ("M", 1e6), ("K", 1e3)):
        if abs(v) >= f:
            return f"{v / f:.{digits}g}{unit}"
    return f"{v:.{digits}g}"


def parse_budgets(specs) -> list[Budget]:
    """One budget string, a Budget, or a list of them; several combine (all must hold)."""
    if specs is None:
        return []
    if isinstance(specs, (str, Budget)):
        specs = [specs]
    out = []
    for s in specs:
        if isinstance(s, str) and "," in s:
            out.extend(Budget.parse(p) for p in s.split(",") if p.strip())
        else:
            out.append(Budget.parse(s))
    return out


@dataclass(frozen=True)
class Reference:
    """What budgets resolve against: the 16-bit model's totals, the fixed (non-site) cost, the weight count."""

    full: dict[str, float]   # column -> total of the all-16-bit model (fixed part included)
    fixed: dict[str, float]  # column -> cost that no choice changes (16-bit biases, norms, ...)
    weights: int             # Σ site elements: the denominator of average bits


def resolve(budgets: list[Budget], ref: Reference) -> dict[str, float]:
    """Model-level budgets -> {cost column: limit on the sum over sites}; the tightest wins per column."""
    limits: dict[str, float] = {}
    for b in budgets:
        col = b.column
        if b.metric == "bits":
            per = b.value * 16 if b.relative else b.value
            limit = per * ref.weights
        else:
            if col not in ref.full:
                raise BudgetError(f"a {b.metric} budget needs a cost model that predicts {b.metric}; "
                                  "pass --hardware NAME (see `mpsearch hardware list`)")
            total = b.value * ref.full[col] if b.relative else b.value
            if b.text and not b.relative and total > ref.full[col] * (1 + 1e-9):
                full = format_metric(b.metric, ref.full[col])
                raise BudgetError(f"budget {b.text!r} is above the 16-bit model's {full}: nothing would be "
                                  f"quantized; give less, e.g. {format_metric(b.metric, ref.full[col] / 4)}")
            limit = total - ref.fixed.get(col, 0.0)
        limits[col] = min(limit, limits.get(col, float("inf")))
    return limits


FIT_RTOL, FIT_ATOL = 1e-9, 1e-12  # the one budget-fit tolerance: float sums of per-site costs


def within(totals: dict[str, float], limits: dict[str, float]) -> bool:
    """Whether every limited total is within its limit (up to rounding of the per-site sums)."""
    return all(totals[c] <= lim * (1 + FIT_RTOL) + FIT_ATOL for c, lim in limits.items())
