"""Deployment targets as data: which formats a runtime's kernels run, on which sites, with which ties.

One TOML file per target in `profiles/` (or a path to your own). A site may take a choice when the
choice matches one `[[kernel]]` entry (weight element, granularity, group size, zero-point, activation
format) and the site's kind is one the runtime quantizes; the 16-bit `keep` formats are always allowed.
`block_divides_k` requires a group or block to divide the reduction length K (the runtimes' packed
kernels need whole blocks). `ties` name structural rules (`_ties.py`) for sites that one fused kernel
runs and that must therefore share a format.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import UsageError
from ..formats import Choice, Format
from ..formats._base import col_count
from ..model import Site

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10 only
    import tomli as tomllib

PROFILES = Path(__file__).parent / "profiles"


def traits(fmt: Format) -> dict:
    """What a runtime cares about in a format: element, granularity (pt/pc/g/block), group, zero-point.

    The clip suffix (`_mse`, `_p999`) is how the scale was chosen, not how it is stored: it is ignored."""
    fam = fmt.family
    if fam == "int":
        return {"element": f"int{fmt.bits}", "granularity": fmt.granularity, "group": fmt.group, "asym": fmt.asym}
    if fam == "minifloat":
        return {"element": fmt.kind, "granularity": fmt.granularity, "group": fmt.group, "asym": False}
    block = getattr(fmt, "block", None) or {"mx": 32, "nvfp4": 16}.get(fam, 0)
    return {"element": getattr(fmt, "kind", fmt.name), "granularity": "block", "group": block, "asym": False}


def act_name(choice: Choice) -> str:
    """`none` for 16-bit activations, else the activation element (`int8`, `int8_asym`, `fp8_e4m3`)."""
    if choice.act is None:
        return "none"
    t = traits(choice.act)
    return t["element"] + ("_asym" if t["asym"] else "")


@dataclass(frozen=True)
class Kernel:
    """One kernel family of the runtime: the choices it runs."""

    name: str
    weights: tuple[str, ...]
    granularity: tuple[str, ...] = ()
    groups: tuple[int, ...] = ()
    asym: tuple[bool, ...] = (False,)
    activations: tuple[str, ...] = ("none",)
    kinds: tuple[str, ...] = ()

    def why_not(self, choice: Choice) -> str | None:
        t = traits(choice.weight)
        if t["element"] not in self.weights:
            return f"weight {t['element']}"
        if t["granularity"] != "block" and self.granularity and t["granularity"] not in self.granularity:
            return f"granularity {t['granularity']}"
        if t["granularity"] == "g" and self.groups and t["group"] not in self.groups:
            return f"group size {t['group']} (runs {', '.join(map(str, self.groups))})"
        if t["asym"] not in self.asym:
            return "asymmetric zero-points" if t["asym"] else "symmetric"
        if act_name(choice) not in self.activations:
            return f"activations {act_name(choice)}"
        return None


@dataclass(frozen=True)
class Target:
    """A runtime profile (see the module docstring); `path` is the file it came from."""

    name: str
    description: str
    exporter: str
    kernels: tuple[Kernel, ...]
    kinds: tuple[str, ...]
    keep_names: tuple[str, ...] = ()
    ties: tuple[str, ...] = ()
    block_divides_k: bool = False
    path: Path | None = field(default=None, compare=False)

    def why_not(self, site: Site, choice: Choice) -> str | None:
        """None if `site` may take `choice` on this runtime, else the reason (one clause)."""
        if choice.weight.is_full_precision:
            if choice.act is None:
                return None
            return f"{self.name} runs no kernel with 16-bit weights and {act_name(choice)} activations"
        if site.kind not in self.kinds:
            return f"{self.name} keeps {site.kind} weights 16-bit"
        if any(site.name == k or site.name.endswith("." + k) for k in self.keep_names):
            return f"{self.name} loads {site.name} unquantized"
        t = traits(choice.weight)
        k = col_count(site.layout.matrix_shape(site.shape))
        if site.shape and self.block_divides_k and t["granularity"] in ("g", "block") and t["group"] and k % t["group"]:
            return f"its {t['granularity'] == 'g' and 'group' or 'block'} of {t['group']} does not divide K={k}"
        reasons = []
        for kern in self.kernels:
            if kern.kinds and site.kind not in kern.kinds:
                reasons.append(f"{kern.name}: {site.kind} sites")
                continue
            why = kern.why_not(choice)
            if why is None:
                return None
            reasons.append(why)
        return f"no {self.name} kernel runs {choice.name} ({'; '.join(dict.fromkeys(reasons))})"


def _load(path: Path) -> Target:
    try:
        raw = tomllib.loads(path.read_text())
        kernels = tuple(Kernel(k["name"], tuple(k["weights"]), tuple(k.get("granularity", ())),
                               tuple(k.get("groups", ())), tuple(k.get("asym", (False,))),
                               tuple(k.get("activations", ("none",))), tuple(k.get("kinds", ())))
                        for k in raw["kernel"])
        return Target(raw["name"], raw.get("description", ""), raw.get("exporter", ""), kernels,
                      tuple(raw["kinds"]), tuple(raw.get("keep_names", ())), tuple(raw.get("ties", ())),
                      bool(raw.get("block_divides_k", False)), path)
    except (OSError, tomllib.TOMLDecodeError, KeyError, TypeError) as e:
        raise UsageError(f"target profile {str(path)!r} is invalid ({type(e).__name__}: {e}); "
                         f"see {PROFILES} for the layout") from None


def target_names() -> list[str]:
    return sorted(p.stem for p in PROFILES.glob("*.toml"))


def get_target(name: str | Target | None) -> Target | None:
    """A bundled profile by name (`vllm`, `tensorrt-llm`, `llama.cpp`, `onnxruntime`) or a .toml path."""
    if name is None or isinstance(name, Target):
        return name
    key = str(name).strip()
    if key.endswith(".toml") and Path(key).is_file():
        return _load(Path(key))
    aliases = {"trt-llm": "tensorrt-llm", "tensorrt_llm": "tensorrt-llm", "llamacpp": "llama.cpp", "gguf": "llama.cpp",
               "ort": "onnxruntime", "sglang": "vllm"}
    key = aliases.get(key.lower(), key.lower())
    path = PROFILES / f"{key}.toml"
    if not path.is_file():
        raise UsageError(f"unknown target {name!r}; choose one of {', '.join(target_names())} (or a profile .toml)")
    return _load(path)
