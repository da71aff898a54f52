"""Layers only look down: an AST import graph of the package, checked against one declared layer map.

Every import counts, including those inside functions (a lazy import is still a dependency). A module
may import modules of its own layer group or of lower layers; groups that share a layer are
independent of each other; and no set of modules may import each other in a cycle.
"""

from __future__ import annotations

import ast
import importlib
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SOURCES = {"mpsearch": "mpsearch", "objectives": "mpsearch.objectives", "hardware_models": "mpsearch.hardware_models"}

# Lowest first. A layer is a list of groups; a group is a list of module prefixes. Groups in one layer
# (estimators vs cost models) may not import each other. This is the one place the map is written.
LAYERS: list[list[list[str]]] = [
    [["mpsearch._version", "mpsearch.errors", "mpsearch.registry", "mpsearch.params", "mpsearch.cache_root",
      "mpsearch.io", "mpsearch.layout", "mpsearch.model", "mpsearch.data", "mpsearch.budget", "mpsearch.objectives",
      "mpsearch.validate", "mpsearch.coverage", "mpsearch.pytree_types", "mpsearch.static_batch",
      "mpsearch.hf", "mpsearch.text", "mpsearch.memo", "mpsearch.distributed"]],
    [["mpsearch.formats"]],
    [["mpsearch.activations", "mpsearch.quantize", "mpsearch.loading", "mpsearch.rounding", "mpsearch.scope"]],
    [["mpsearch.sensitivity"], ["mpsearch.hardware_models"], ["mpsearch.targets"]],
    [["mpsearch.plan", "mpsearch.apply", "mpsearch.packed", "mpsearch.report", "mpsearch.exporters"]],
    [["mpsearch.search"]],
    [["mpsearch.planner", "mpsearch.api"]],
    [["mpsearch.study", "mpsearch.examples"]],
    [["mpsearch.cli", "mpsearch.__main__", "mpsearch"]],
]


def discover() -> dict[str, Path]:
    mods = {}
    for folder, pkg in SOURCES.items():
        for f in (ROOT / folder).rglob("*.py"):
            parts = list(f.relative_to(ROOT / folder).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            mods[".".join([pkg, *parts])] = f
    return mods


def imports(name: str, source: str, is_package: bool, known) -> set[str]:
    """The known modules `source` (module `name`) imports, resolved to the longest known module name."""

    def longest(mod: str) -> str | None:
        while mod and mod not in known:
            mod = mod.rpartition(".")[0]
        return mod or None

    out = set()
    for node in ast.walk(ast.parse(source)):
        targets = []
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = name.split(".") if is_package else name.split(".")[:-1]
                base = base[:len(base) - (node.level - 1)]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            # `from pkg import sub` depends on pkg.sub when that is a module, else on pkg itself
            targets = [f"{mod}.{a.name}" if f"{mod}.{a.name}" in known else mod for a in node.names]
        for t in targets:
            hit = longest(t)
            if hit and hit != name:
                out.add(hit)
    return out


def graph(sources: dict[str, tuple[str, bool]]) -> dict[str, set[str]]:
    """{module: imported modules} from {module: (source text, is package)}."""
    return {m: imports(m, src, pkg, sources) for m, (src, pkg) in sources.items()}


def position(module: str, layers=LAYERS) -> tuple[int, int]:
    """(layer, group) of the longest prefix naming `module`."""
    best = None
    for i, layer in enumerate(layers):
        for j, group in enumerate(layer):
            for prefix in group:
                if (module == prefix or module.startswith(prefix + ".")) and (best is None or len(prefix) > best[0]):
                    best = (len(prefix), i, j)
    if best is None:
        raise AssertionError(f"{module} is in no layer; add it to LAYERS in tests/test_layers.py")
    return best[1], best[2]


def violations(deps: dict[str, set[str]], layers=LAYERS) -> list[str]:
    """Upward imports, imports across independent groups of one layer, and import cycles."""
    bad = []
    for m, targets in sorted(deps.items()):
        lm, gm = position(m, layers)
        for t in sorted(targets):
            if t.startswith(m + "."):  # a package importing its own submodules
                continue
            lt, gt = position(t, layers)
            if lt > lm:
                bad.append(f"upward import: {m} (layer {lm}) imports {t} (layer {lt})")
            elif lt == lm and gt != gm:
                bad.append(f"sideways import: {m} imports {t}, an independent group of the same layer")
    bad += [f"import cycle: {' -> '.join(c)}" for c in cycles(deps)]
    return bad


def cycles(deps: dict[str, set[str]]) -> list[list[str]]:
    """One cycle per strongly connected component of more than one module (a package's edges to its own
    submodules and a submodule's edge back to its package, the usual re-export, are left out)."""
    edges = {m: {t for t in ts if not t.startswith(m + ".") and not m.startswith(t + ".")} for m, ts in deps.items()}
    index, low, stack, on, out = {}, {}, [], set(), []

    def visit(v):  # Tarjan
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in edges.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp) + [sorted(comp)[0]])

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return out


def package_graph() -> dict[str, set[str]]:
    mods = discover()
    return graph({m: (f.read_text(encoding="utf-8"), f.name == "__init__.py") for m, f in mods.items()})


def test_every_module_has_a_layer_and_imports_only_down():
    assert violations(package_graph()) == []


def test_the_checker_catches_an_upward_import_a_sideways_one_and_a_cycle():
    fake = {
        "mpsearch.errors": ("", False),
        "mpsearch.plan": ("from .planner import Planner\n", False),  # core -> planner: upward
        "mpsearch.planner": ("from ..plan import Plan\n", True),
        "mpsearch.sensitivity": ("def f():\n    from ..hardware_models import get\n", True),  # lazy, sideways
        "mpsearch.hardware_models": ("from mpsearch.errors import UsageError\n", True),
        "mpsearch.search.a": ("from .b import x\n", False),  # a <-> b: a cycle inside one layer
        "mpsearch.search.b": ("from . import a\n", False),
        "mpsearch.search": ("", True),
    }
    found = violations(graph(fake))
    assert "upward import: mpsearch.plan (layer 4) imports mpsearch.planner (layer 6)" in found
    assert any(v.startswith("sideways import: mpsearch.sensitivity imports mpsearch.hardware_models") for v in found)
    assert "import cycle: mpsearch.search.a -> mpsearch.search.b -> mpsearch.search.a" in found
    assert "import cycle: mpsearch.plan -> mpsearch.planner -> mpsearch.plan" in found
    assert len(found) == 4  # and nothing else: the downward imports pass


def test_relative_imports_resolve_from_a_package_and_from_a_module():
    known = {"mpsearch", "mpsearch.formats", "mpsearch.search", "mpsearch.search.ilp", "mpsearch.errors"}
    assert imports("mpsearch.search", "from .ilp import x\nfrom ..errors import E\n", True, known) == \
        {"mpsearch.search.ilp", "mpsearch.errors"}
    assert imports("mpsearch.search.ilp", "from ..formats import get\nfrom . import ilp\n", False, known) == \
        {"mpsearch.formats"}


REORDERED_INIT = """
import ast, importlib.util, random, sys
init = sys.argv[1]
tree = ast.parse(open(init, encoding="utf-8").read())
imports = [n for n in tree.body if isinstance(n, (ast.Import, ast.ImportFrom))]
others = [n for n in tree.body if not isinstance(n, (ast.Import, ast.ImportFrom))]
random.Random(int(sys.argv[2])).shuffle(imports)
tree.body = others[:1] + imports + others[1:]  # the docstring, then the imports in another order
spec = importlib.util.spec_from_file_location("mpsearch", init, submodule_search_locations=[sys.argv[3]])
module = importlib.util.module_from_spec(spec)
sys.modules["mpsearch"] = module
exec(compile(tree, init, "exec"), module.__dict__)
assert callable(module.plan) and callable(module.pareto) and module.Planner
"""


def test_package_init_imports_in_another_order():
    """`mpsearch/__init__.py` with its import lines shuffled still imports (nothing relies on the order)."""
    init = ROOT / "mpsearch" / "__init__.py"
    r = subprocess.run([sys.executable, "-c", REORDERED_INIT, str(init), "7", str(init.parent)],
                       capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]


def test_every_module_imports():
    for m in sorted(discover()):
        if m.endswith("__main__"):
            continue
        importlib.import_module(m)
