"""Study files: a committed TOML that names a grid of trials (model × formats × estimator × hardware
target × searcher × budget) and the metrics whose Pareto fronts the study reports.

Validation happens here, before anything is loaded or run, so a typo costs one line of output:
every error names the file, the bad key and the fix.
"""

from __future__ import annotations

import difflib
import hashlib
import itertools
import json
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path

from .. import hardware_models
from ..budget import parse_budgets
from ..errors import MpsearchError, StudyError
from ..examples import EXAMPLES
from ..formats import DEFAULT_FORMATS, parse_choices
from ..objectives import get_objective, objective_names
from ..objectives import sign as objective_sign
from ..search import get_searcher, searcher_names
from ..sensitivity import estimator_names, get_estimator

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on 3.10 only
    import tomli as tomllib

NO_HARDWARE = "none"  # storage costs only (bytes, bits, BOPs): no accelerator model
# Predicted totals every plan carries (Plan.totals); latency and energy need a hardware target.
COST_METRICS = ("bytes", "avg_bits", "bits", "bops", "omega", "latency", "energy")
HARDWARE_METRICS = ("latency", "energy")
GRID_DIMS = ("model", "formats", "estimator", "hardware", "searcher", "budget")
TOP_KEYS = ("name", "description", "seed", "models", "formats", "hardware", "estimators", "searchers",
            "budgets", "objectives", "measure", "objective", "series", "storage", "run")
MODEL_KEYS = ("name", "example", "path", "factory", "trust_pickle", "data", "test_data", "batch_size")
RUN_KEYS = ("heartbeat_seconds", "grace_seconds", "max_retry", "guard")


@dataclass(frozen=True)
class ModelSpec:
    """A bundled example by name, or a model file with its loader options and data files."""

    label: str
    example: str | None = None
    path: str | None = None
    factory: str | None = None
    trust_pickle: bool = False
    data: str | None = None
    test_data: str | None = None
    batch_size: int = 256


@dataclass(frozen=True)
class PartSpec:
    """A registered estimator or searcher under a label, with the settings passed to it."""

    label: str
    name: str
    settings: dict = field(default_factory=dict, hash=False)


@dataclass(frozen=True)
class Metric:
    """A Pareto axis: a predicted total (`bytes`, `latency`, ...) or a measured objective."""

    name: str
    maximize: bool
    measured: bool

    def __str__(self) -> str:
        return f"{self.name}:{'max' if self.maximize else 'min'}"


@dataclass(frozen=True)
class RunSettings:
    """How workers share the storage: heartbeat period, when a silent trial counts as dead, retries."""

    heartbeat_seconds: int = 30
    grace_seconds: int = 90
    max_retry: int = 3
    guard: bool = True  # plan()'s measured guard against uniform plans


@dataclass(frozen=True)
class GridPoint:
    """One trial of the study. `digest` pins everything that determines its result."""

    index: int
    model: str
    formats: str
    estimator: str
    hardware: str
    searcher: str
    budget: str
    digest: str

    @property
    def key(self) -> str:
        return "|".join(getattr(self, d) for d in GRID_DIMS)

    def attrs(self) -> dict:
        return asdict(self) | {"key": self.key}

    @classmethod
    def from_attrs(cls, attrs: dict) -> GridPoint:
        return cls(**{k: attrs[k] for k in cls.__dataclass_fields__})


@dataclass
class StudySpec:
    name: str
    source: Path
    models: list[ModelSpec]
    formats: dict[str, list[str]]
    hardware: list[str]
    estimators: list[PartSpec]
    searchers: list[PartSpec]
    budgets: list[str]
    objectives: list[Metric]
    measure: list[str]
    series: list[str]
    seed: int = 0
    description: str = ""
    objective: str | None = None  # the loss plan() protects (default: task loss or KL)
    storage: str | None = None
    run: RunSettings = field(default_factory=RunSettings)

    def model(self, label: str) -> ModelSpec:
        return next(m for m in self.models if m.label == label)

    def estimator(self, label: str) -> PartSpec:
        return next(e for e in self.estimators if e.label == label)

    def searcher(self, label: str) -> PartSpec:
        return next(s for s in self.searchers if s.label == label)

    @property
    def default_storage(self) -> str:
        """SQLite beside the study file: embedded, nothing to set up."""
        return f"sqlite:///{self.source.with_suffix('.db')}"

    def grid(self) -> list[GridPoint]:
        """Every combination, ordered so trials sharing a sensitivity table (model, formats,
        estimator) are adjacent: a worker popping trials in order computes each table once."""
        points = []
        dims = ([m.label for m in self.models], list(self.formats), [e.label for e in self.estimators],
                self.hardware, [s.label for s in self.searchers], self.budgets)
        for i, combo in enumerate(itertools.product(*dims)):
            values = dict(zip(GRID_DIMS, combo, strict=True))
            points.append(GridPoint(index=i, digest=self._digest(values), **values))
        return points

    def _digest(self, v: dict) -> str:
        """Hash of what decides this trial's result, so an edited setting never reuses a stale trial."""
        config = {"model": asdict(self.model(v["model"])), "formats": self.formats[v["formats"]],
                  "estimator": asdict(self.estimator(v["estimator"])), "hardware": v["hardware"],
                  "searcher": asdict(self.searcher(v["searcher"])), "budget": v["budget"], "seed": self.seed,
                  "objective": self.objective, "measure": self.measure, "guard": self.run.guard}
        return hashlib.sha256(json.dumps(config, sort_keys=True, default=str).encode()).hexdigest()[:16]


class _Checker:
    """Builds one-line errors: '<file>: <key>: <problem>; <fix>'."""

    def __init__(self, source: Path):
        self.source = source

    def fail(self, key: str, problem: str) -> StudyError:
        return StudyError(f"{self.source}: {key}: {problem}")

    def unknown_keys(self, where: str, got: dict, allowed: tuple[str, ...]) -> None:
        for k in got:
            if k not in allowed:
                close = difflib.get_close_matches(k, allowed, n=1)
                hint = f"did you mean {close[0]!r}?" if close else f"allowed keys: {', '.join(allowed)}"
                raise self.fail(f"{where}{k}", f"unknown key; {hint}")

    def typed(self, key: str, v, types: type, example: str):
        if not isinstance(v, types) or (isinstance(v, bool) and types is not bool):  # TOML true is no int
            raise self.fail(key, f"expected {example}, got {v!r}")
        return v

    def str_list(self, key: str, v, example: str) -> list[str]:
        if isinstance(v, str):
            v = [v]
        if not isinstance(v, list) or not v or not all(isinstance(s, str) and s.strip() for s in v):
            raise self.fail(key, f"expected a non-empty list of strings, e.g. {key} = {example}")
        if len(set(v)) != len(v):
            dup = next(s for s in v if v.count(s) > 1)
            raise self.fail(key, f"{dup!r} is listed twice; list each value once")
        return [s.strip() for s in v]


def load_spec(path: str | Path) -> StudySpec:
    """Read and validate a study file; raises StudyError naming the bad key and the fix."""
    p = Path(path).resolve()
    if not p.is_file():
        raise StudyError(f"study file {str(path)!r} does not exist; see studies/digits.toml for an example")
    try:
        raw = tomllib.loads(p.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as e:
        raise StudyError(f"{path}: not valid TOML ({e}); fix the syntax at that line") from e
    return parse_spec(raw, p, shown=Path(path))


def parse_spec(raw: dict, source: Path, shown: Path | None = None) -> StudySpec:
    """Validate a parsed study table; `source` anchors relative paths, `shown` is how errors name it."""
    c = _Checker(shown or source)
    c.unknown_keys("", raw, TOP_KEYS)
    for key in ("models", "budgets", "objectives"):
        if key not in raw:
            raise c.fail(key, "missing; a study needs models, budgets and objectives (studies/digits.toml)")
    name = c.typed("name", raw.get("name", source.stem), str, 'a string, e.g. name = "digits"')
    if not name.strip() or "|" in name:
        raise c.fail("name", "must be a non-empty string without '|'")
    seed = c.typed("seed", raw.get("seed", 0), int, "an integer, e.g. seed = 0")
    hardware = _hardware(c, raw.get("hardware", [NO_HARDWARE]))
    models = _models(c, raw["models"], source.parent)
    formats = _formats(c, raw.get("formats", DEFAULT_FORMATS))
    estimators = _parts(c, "estimators", raw.get("estimators", ["hessian"]), estimator_names(), "hessian",
                        get_estimator)
    searchers = _parts(c, "searchers", raw.get("searchers", ["ilp"]), searcher_names(), "ilp", get_searcher)
    budgets = _budgets(c, raw["budgets"], hardware)
    objective = raw.get("objective")
    if objective is not None:
        c.typed("objective", objective, str, 'a string, e.g. objective = "kl"')
        _objective_name(c, "objective", objective)
    measure = []
    if "measure" in raw:
        listed = c.str_list("measure", raw["measure"], '["accuracy", "cross_entropy"]')
        measure = [_objective_name(c, f"measure[{i}]", m) for i, m in enumerate(listed)]
    objectives = _objectives(c, raw["objectives"], hardware)
    for m in objectives:
        if m.measured and m.name not in measure:
            measure.append(m.name)
    series = c.str_list("series", raw.get("series", ["model", "hardware", "estimator"]),
                        '["model", "estimator"]')
    for i, s in enumerate(series):
        if s not in GRID_DIMS or s == "budget":
            raise c.fail(f"series[{i}]", f"{s!r} is not a grid dimension; use some of "
                         f"{', '.join(d for d in GRID_DIMS if d != 'budget')}")
    storage = raw.get("storage")
    if storage is not None:
        c.typed("storage", storage, str, 'a database URL, e.g. storage = "postgresql://host/db"')
    run = _run(c, raw.get("run", {}))
    return StudySpec(name=name.strip(), source=source, models=models, formats=formats, hardware=hardware,
                     estimators=estimators, searchers=searchers, budgets=budgets, objectives=objectives,
                     measure=measure, series=series, seed=seed, description=str(raw.get("description", "")),
                     objective=objective, storage=storage, run=run)


def _hardware(c: _Checker, v) -> list[str]:
    out = c.str_list("hardware", v, '["none", "h100"]')
    known = hardware_models.cost_model_names()
    for i, h in enumerate(out):
        if h != NO_HARDWARE and h not in known:
            choices = ", ".join([NO_HARDWARE, *known])
            raise c.fail(f"hardware[{i}]", f"unknown hardware target {h!r}; choose from {choices} "
                         "(`mpsearch hardware list`)")
    return out


def _models(c: _Checker, v, base: Path) -> list[ModelSpec]:
    if isinstance(v, (str, dict)):
        v = [v]
    if not isinstance(v, list) or not v:
        raise c.fail("models", 'expected a list, e.g. models = ["digits-cnn"] or [[models]] tables with '
                     'example = "..." or path = "..."')
    out = []
    for i, m in enumerate(v):
        key = f"models[{i}]"
        if isinstance(m, str):
            m = {"example": m}
        if not isinstance(m, dict):
            raise c.fail(key, f"expected an example name or a table, got {m!r}")
        c.unknown_keys(f"{key}.", m, MODEL_KEYS)
        if ("example" in m) == ("path" in m):
            raise c.fail(key, 'give exactly one of example = "digits-cnn" or path = "model.pt2"')
        files = {}
        for k in ("path", "data", "test_data"):
            if k in m:
                f = Path(c.typed(f"{key}.{k}", m[k], str, f'a file path, e.g. {k} = "file"'))
                f = f if f.is_absolute() else (base / f).resolve()
                if not f.is_file():
                    raise c.fail(f"{key}.{k}", f"file {str(f)!r} does not exist; "
                                 "paths are relative to the study file")
                files[k] = str(f)
        if "example" in m:
            ex = c.typed(f"{key}.example", m["example"], str, 'an example name, e.g. example = "digits-cnn"')
            if ex not in EXAMPLES:
                raise c.fail(f"{key}.example", f"unknown example {ex!r}: this mpsearch bundles "
                             f"{', '.join(sorted(EXAMPLES))}; install a version that ships {ex!r}, or give "
                             'path = "model.pt2" with data = "calibration.npz"')
            label = m.get("name", ex)
        else:
            if "data" not in m:
                raise c.fail(f"{key}.data", 'a model file needs calibration data: data = "calibration.npz" '
                             "(holding x and optionally y)")
            label = m.get("name", Path(files["path"]).stem)
        bs = c.typed(f"{key}.batch_size", m.get("batch_size", 256), int, "a positive integer")
        if bs <= 0:
            raise c.fail(f"{key}.batch_size", "must be a positive integer")
        factory = m.get("factory")
        if factory is not None:
            c.typed(f"{key}.factory", factory, str, 'a builder, e.g. factory = "pkg.module:function"')
        out.append(ModelSpec(label=c.typed(f"{key}.name", label, str, "a string"), example=m.get("example"),
                             factory=factory,
                             trust_pickle=c.typed(f"{key}.trust_pickle", m.get("trust_pickle", False), bool,
                                                  "true or false"),
                             batch_size=bs, **files))
    _unique(c, "models", [m.label for m in out], "give each a distinct name = ...")
    return out


def _formats(c: _Checker, v) -> dict[str, list[str]]:
    """A string or list is one candidate set; a table maps set names to sets (one grid value each)."""
    sets = v if isinstance(v, dict) else {"default": v}
    if not sets:
        raise c.fail("formats", 'empty; e.g. formats = "int2,int4,int8,bf16"')
    out = {}
    for label, s in sets.items():
        key = "formats" if not isinstance(v, dict) else f"formats.{label}"
        if not isinstance(s, (str, list)):
            raise c.fail(key, f'expected "int4,int8,bf16" or a list of format names, got {s!r}')
        try:
            out[label] = [ch.name for ch in parse_choices(s, [])]
        except MpsearchError as e:
            raise c.fail(key, f"{e} (`mpsearch formats` lists them)") from e
    return out


def _parts(c: _Checker, key: str, v, known: list[str], example: str, build) -> list[PartSpec]:
    """Entries are a registered name, or an inline table {name = ..., label = ..., <settings>}; `build(name,
    **settings)` checks the settings now, so a misspelt one fails the file, not every trial that uses it."""
    if isinstance(v, (str, dict)):
        v = [v]
    if not isinstance(v, list) or not v:
        raise c.fail(key, f'expected a list, e.g. {key} = ["{example}"]')
    out = []
    for i, e in enumerate(v):
        k = f"{key}[{i}]"
        if isinstance(e, str):
            e = {"name": e}
        if not isinstance(e, dict) or not isinstance(e.get("name"), str):
            raise c.fail(k, f'expected a name or {{name = "{example}", label = "...", <settings>}}, '
                         f"got {e!r}")
        if e["name"] not in known:
            raise c.fail(f"{k}.name", f"unknown {key[:-1]} {e['name']!r}; choose one of {', '.join(known)}")
        settings = {s: val for s, val in e.items() if s not in ("name", "label")}
        try:
            build(e["name"], **settings)
        except MpsearchError as err:
            raise c.fail(k, str(err)) from None
        label = c.typed(f"{k}.label", e.get("label", e["name"]), str, "a string")
        out.append(PartSpec(label, e["name"], settings))
    _unique(c, key, [p.label for p in out], "give entries with the same name distinct label = ...")
    return out


def _budgets(c: _Checker, v, hardware: list[str]) -> list[str]:
    out = c.str_list("budgets", v, '["3bits", "4bits", "5bits"]')
    for i, b in enumerate(out):
        try:
            parsed = parse_budgets(b)
        except MpsearchError as e:
            raise c.fail(f"budgets[{i}]", str(e)) from e
        needs = [x.metric for x in parsed if x.metric in HARDWARE_METRICS]
        if needs and NO_HARDWARE in hardware:
            raise c.fail(f"budgets[{i}]", f"a {needs[0]} budget needs a hardware target on every trial; "
                         f'remove "none" from hardware or drop {b!r}')
    return out


def _objective_name(c: _Checker, key: str, name: str) -> str:
    try:
        get_objective(name)
    except MpsearchError:
        known = ", ".join(objective_names())
        raise c.fail(key, f"unknown objective {name!r}; choose one of {known}") from None
    return name


def _objectives(c: _Checker, v, hardware: list[str]) -> list[Metric]:
    names = c.str_list("objectives", v, '["bytes:min", "accuracy:max"]')
    if not 2 <= len(names) <= 3:
        raise c.fail("objectives", f"a Pareto front needs two or three metrics, got {len(names)}; "
                     'e.g. objectives = ["bytes:min", "accuracy:max"]')
    out = []
    for i, text in enumerate(names):
        name, _, direction = text.partition(":")
        if direction not in ("", "min", "max"):
            raise c.fail(f"objectives[{i}]", f"direction {direction!r} must be min or max, e.g. {name}:min")
        if name in COST_METRICS:
            if name in HARDWARE_METRICS and NO_HARDWARE in hardware:
                raise c.fail(f"objectives[{i}]", f"{name} needs a hardware target on every trial; "
                             'remove "none" from hardware')
            measured, default_max = False, False
        elif name in objective_names():
            measured, default_max = True, objective_sign(name) < 0
        else:
            raise c.fail(f"objectives[{i}]", f"unknown metric {name!r}; use a predicted total "
                         f"({', '.join(COST_METRICS)}) or a measured objective "
                         f"({', '.join(objective_names())})")
        out.append(Metric(name, direction == "max" if direction else default_max, measured))
    _unique(c, "objectives", [m.name for m in out], "list each metric once")
    return out


def _run(c: _Checker, v) -> RunSettings:
    if not isinstance(v, dict):
        raise c.fail("run", "expected a table: [run] heartbeat_seconds = 30")
    c.unknown_keys("run.", v, RUN_KEYS)
    hb = c.typed("run.heartbeat_seconds", v.get("heartbeat_seconds", 30), int, "a positive integer")
    grace = c.typed("run.grace_seconds", v.get("grace_seconds", 3 * hb), int, "an integer")
    retry = c.typed("run.max_retry", v.get("max_retry", 3), int, "an integer >= 0")
    guard = c.typed("run.guard", v.get("guard", True), bool, "true or false")
    if hb <= 0:
        raise c.fail("run.heartbeat_seconds", "must be a positive integer")
    if grace <= hb:
        raise c.fail("run.grace_seconds", f"must exceed heartbeat_seconds ({hb}), or a live trial looks dead")
    if retry < 0:
        raise c.fail("run.max_retry", "must be >= 0")
    return RunSettings(hb, grace, retry, guard)


def _unique(c: _Checker, key: str, labels: list[str], fix: str) -> None:
    for s in labels:
        if labels.count(s) > 1 or "|" in s:
            why = "used twice" if labels.count(s) > 1 else "not allowed (|)"
            raise c.fail(key, f"label {s!r} is {why}; {fix}")
