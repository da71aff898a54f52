"""ILP solve time at scale: mpsearch's solver vs. a straightforward PuLP + CBC model of the same ILP.

    python benchmarks/search.py [--sites 1000] [--choices 10] [--repeats 3] [--out results/search]

Instances are HAWQ-shaped: Ω(s, b) = (Tr_s/n_s)·n_s·4^-b with log-normal traces, memory = n_s·b/8
bytes, latency = a_s + k_s·b with per-site noise; two budgets (memory and latency) bind. The
baseline builds the textbook model (binary x per (site, format), Σ x = 1, one row per budget) with
PuLP and solves it with the bundled CBC at zero gap, i.e. what HAWQ's notebook and the spine did.
Both must prove optimality and agree on the objective; the table reports both times and the ratio,
measured side by side in one run so machine load cancels. The solver runs on the CPU; `--device`
is accepted for uniformity with the other benchmarks and ignored.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pulp
from _markdown import markdown  # noqa: I001  (benchmarks/ is on the path when run as a script)

from mpsearch.search import SearchProblem
from mpsearch.search.ilp import available_solvers, solve_ilp

BITS = np.array([2, 3, 4, 5, 6, 7, 8, 10, 12, 16])


def instance(sites: int, choices: int, seed: int, ties: int = 0) -> tuple[pd.DataFrame, dict, list]:
    """A table, two binding budgets, and `ties` tie groups of two neighbouring sites."""
    rng = np.random.default_rng(seed)
    bits = BITS[np.linspace(0, len(BITS) - 1, choices).round().astype(int)]
    n = rng.integers(2_000, 2_000_000, sites)
    trace = rng.lognormal(-4, 1.5, sites)
    a, k = rng.uniform(5e-6, 5e-5, sites), rng.uniform(1e-6, 2e-5, sites)
    s_idx = np.repeat(np.arange(sites), choices)
    b = np.tile(bits, sites).astype(float)
    table = pd.DataFrame({
        "site": [f"s{i}" for i in s_idx], "format": [f"int{x}" for x in b.astype(int)],
        "omega": trace[s_idx] * n[s_idx] * 4.0 ** -b,
        "bytes": np.ceil(n[s_idx] * b / 8) + 2 * n[s_idx] // 64,
        "latency": (a[s_idx] + k[s_idx] * b) * rng.uniform(0.95, 1.05, len(b)),
    })
    lo = table.groupby("site")[["bytes", "latency"]].min().sum()
    hi = table.groupby("site")[["bytes", "latency"]].max().sum()
    limits = {"bytes": float(lo.bytes + 0.30 * (hi.bytes - lo.bytes)),
              "latency": float(lo.latency + 0.40 * (hi.latency - lo.latency))}
    tie_groups = [[f"s{2 * i}", f"s{2 * i + 1}"] for i in range(ties)]
    return table, limits, tie_groups


def neighbour_pairs(table: pd.DataFrame, seed: int) -> pd.DataFrame:
    """Interaction terms between execution-order neighbours, signed, a tenth of the singles' scale."""
    rng = np.random.default_rng(seed + 1000)
    sites = list(dict.fromkeys(table.site))
    fmts = {s: list(g.format) for s, g in table.groupby("site", sort=False)}
    om = table.set_index(["site", "format"]).omega
    rows = [{"site_a": a, "format_a": fa, "site_b": b, "format_b": fb,
             "omega": float(rng.normal(0.02, 0.1) * np.sqrt(om[(a, fa)] * om[(b, fb)]))}
            for a, b in zip(sites[:-1], sites[1:]) for fa in fmts[a] for fb in fmts[b]]
    return pd.DataFrame(rows)


def baseline(table: pd.DataFrame, limits: dict, ties: list, pairs: pd.DataFrame | None = None):
    """The textbook PuLP model solved by the bundled CBC at zero gap: (seconds, objective, status).
    Pairwise products get all three linearization rows y ≤ x_a, y ≤ x_b, y ≥ x_a + x_b − 1."""
    t0 = time.perf_counter()
    lp = pulp.LpProblem("baseline", pulp.LpMinimize)
    x = {(s, f): lp.add_variable(f"x{i}", 0, 1, "Integer") if hasattr(lp, "add_variable")
         else pulp.LpVariable(f"x{i}", cat="Binary") for i, (s, f) in enumerate(zip(table.site, table.format))}
    obj = [float(o) * x[(s, f)] for s, f, o in zip(table.site, table.format, table.omega)]
    for j, r in enumerate(() if pairs is None else pairs.itertuples()):
        y = lp.add_variable(f"y{j}", 0, 1) if hasattr(lp, "add_variable") else pulp.LpVariable(f"y{j}", 0, 1)
        a, b = x[(r.site_a, r.format_a)], x[(r.site_b, r.format_b)]
        lp += y <= a
        lp += y <= b
        lp += y >= a + b - 1
        obj.append(float(r.omega) * y)
    lp += pulp.lpSum(obj)
    for s, grp in table.groupby("site", sort=False):
        lp += pulp.lpSum(x[(s, f)] for f in grp.format) == 1
    for col, lim in limits.items():
        lp += pulp.lpSum(float(c) * x[(s, f)] for s, f, c in zip(table.site, table.format, table[col])) <= lim
    for g in ties:
        for f in table[table.site == g[0]].format:
            for s in g[1:]:
                lp += x[(s, f)] == x[(g[0], f)]
    lp.solve(pulp.PULP_CBC_CMD(msg=False, gapRel=0.0))
    status = pulp.LpStatus[lp.status].lower()
    return time.perf_counter() - t0, float(pulp.value(lp.objective)), status


def main(argv: list[str] | None = None) -> pd.DataFrame:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sites", type=int, default=1000)
    ap.add_argument("--choices", type=int, default=10)
    ap.add_argument("--repeats", type=int, default=3, help="instances (seeds) per configuration")
    ap.add_argument("--device", default="cpu", help="ignored: the ILP solvers run on the CPU")
    ap.add_argument("--out", type=Path, default=Path("results/search"), help="writes OUT.csv and OUT.md")
    args = ap.parse_args(argv)

    # (label, sites, choices, tie groups, neighbour pairwise terms)
    configs = [("2 budgets", args.sites, args.choices, 0, False),
               ("2 budgets + ties", args.sites, args.choices, args.sites // 10, False),
               ("2 budgets + pairwise", args.sites // 5, 4, 0, True)]
    rows = []
    for label, n_sites, n_choices, ties, with_pairs in configs:
        for seed in range(args.repeats):
            table, limits, tie_groups = instance(n_sites, n_choices, seed, ties)
            pairs = neighbour_pairs(table, seed) if with_pairs else None
            problem = SearchProblem(table, limits, tie_groups, pairs)
            base_s, base_obj, base_status = baseline(table, limits, tie_groups, pairs)
            for solver in available_solvers():
                t0 = time.perf_counter()
                sol = solve_ilp(problem, solver=solver)
                ours = time.perf_counter() - t0
                rows.append({"instance": label, "seed": seed, "sites": n_sites, "choices": n_choices,
                             "pair_terms": 0 if pairs is None else len(pairs),
                             "solver": f"mpsearch ({solver})", "status": sol.status,
                             "seconds": ours, "baseline_seconds": base_s, "speedup": base_s / ours,
                             "objective": sol.objective, "baseline_objective": base_obj,
                             "baseline_status": base_status, "gap": sol.gap,
                             "agree": abs(sol.objective - base_obj) <= 1e-6 * abs(base_obj)})
                print(f"{label:18s} seed {seed} {solver:5s}: {ours:6.2f} s ({sol.status}, gap {sol.gap:.1e}) "
                      f"vs baseline {base_s:6.2f} s ({base_status}) -> {base_s / ours:4.1f}x; "
                      f"objectives agree: {rows[-1]['agree']}", flush=True)
    frame = pd.DataFrame(rows)
    summary = frame.groupby(["instance", "sites", "choices", "pair_terms", "solver"], sort=False).agg(
        median_seconds=("seconds", statistics.median), max_seconds=("seconds", "max"),
        baseline_median_seconds=("baseline_seconds", statistics.median),
        median_speedup=("speedup", statistics.median), all_optimal=("status", lambda s: (s == "optimal").all()),
        all_agree=("agree", "all")).reset_index()
    print()
    print(summary.to_string(index=False, float_format=lambda v: f"{v:.3g}"))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    frame.to_csv(args.out.with_suffix(".csv"), index=False)
    args.out.with_suffix(".md").write_text(markdown(summary, 3))
    return frame


if __name__ == "__main__":
    main()
