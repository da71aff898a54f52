"""The analytical cost model for one accelerator spec, and one registered class per bundled spec."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from torch import nn

from mpsearch.formats import Choice, get_choice
from mpsearch.model import Site

from ._base import _REGISTRY, CostModel, register_cost_model
from ._roofline import Efficiencies, Gemm, GemmCost, components, gemm_cost, why_unsupported
from ._spec import Spec, bundled_spec_paths, load_spec
from ._workload import Workload, site_gemm, site_gemms


@dataclass(eq=False, repr=False)
class AnalyticalCostModel(CostModel):
    """Roofline latency, bytes moved, BOPs and energy of each site on the target a `Spec` describes.

    `batch` (samples per call) and `seq_len` (tokens per sample, for sequence models) set the
    workload; latency and energy are per call of the whole batch. `spec`: a `Spec` or a spec file
    (None: the registered class's own spec); after construction it holds the loaded `Spec`.
    """

    metrics: ClassVar[tuple[str, ...]] = ("latency", "energy")
    spec_path: ClassVar[str | None] = None
    batch: int = 1
    seq_len: int | None = None
    spec: Spec | str | Path | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.spec is None:
            self.spec = self.spec_path
        self.spec = self.spec if isinstance(self.spec, Spec) else load_spec(self.spec)
        if not self.name:
            self.name = self.spec.name
        self.workload = Workload(self.batch, self.seq_len)
        self.efficiencies = Efficiencies.of(self.spec)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.spec.name!r}, {self.workload})"

    def unsupported(self, choice: Choice) -> str | None:
        return why_unsupported(self.spec, get_choice(choice))

    def route_key(self, choice: Choice | str) -> str:
        """The compute path a choice runs on (`fp8`, `bf16+dequant`, ...)."""
        return components(self.spec, Gemm(1, 1, 1), choice).key

    def gemm_cost(
        self,
        m: int,
        n: int,
        k: int,
        choice: Choice | str,
        *,
        in_elems: int | None = None,
        out_elems: int | None = None,
        weight_shape: tuple[int, ...] | None = None,
    ) -> GemmCost:
        """Latency, bytes, BOPs and energy of one (m × k) @ (k × n) product under `choice`."""
        return gemm_cost(
            self.spec, Gemm(m, n, k, in_elems, out_elems, weight_shape), choice, self.efficiencies
        )

    def conv_cost(
        self,
        batch: int,
        in_channels: int,
        out_channels: int,
        in_hw: tuple[int, ...],
        kernel: tuple[int, ...],
        choice: Choice | str,
        *,
        stride: int = 1,
        padding: int = 0,
        groups: int = 1,
    ) -> GemmCost:
        """A convolution as an implicit GEMM (output pixels × out channels × in/groups · kernel)."""
        out_hw = [(h + 2 * padding - kk) // stride + 1 for h, kk in zip(in_hw, kernel, strict=True)]
        pixels = 1
        for o in out_hw:
            pixels *= o
        k = in_channels // groups
        for kk in kernel:
            k *= kk
        in_elems = batch * in_channels
        for h in in_hw:
            in_elems *= h
        return gemm_cost(
            self.spec,
            Gemm(
                batch * pixels,
                out_channels,
                k,
                in_elems,
                batch * pixels * out_channels,
                (out_channels, in_channels // groups, *kernel),
            ),
            choice,
            self.efficiencies,
        )

    def site_gemm(self, site: Site) -> Gemm:
        return site_gemm(site, self.workload)

    def site_cost(self, site: Site, choice: Choice) -> dict[str, float]:
        costs = [gemm_cost(self.spec, g, choice, self.efficiencies) for g in site_gemms(site, self.workload)]
        return {"latency": sum(c.latency for c in costs), "energy": sum(c.energy for c in costs)}

    def fixed_cost(self, model: nn.Module, sites: list[Site]) -> dict[str, float]:
        """Non-site parameters (biases, norms) are read once per call at 16 bits."""
        site_params = {s.param for s in sites}
        other = sum(p.numel() for n, p in model.named_parameters() if n not in site_params) * 2.0
        bw = self.spec.bandwidth.value * self.spec.memory_efficiency.value
        return {"latency": other / bw, "energy": other * self.spec.dram_energy.value}


_WORKLOAD = re.compile(r"(batch|seq|seq_len)=(\d+)")


def parse_hardware(text: str) -> tuple[str, dict]:
    """`h100`, `h100:batch=32`, `m55-u55:batch=1,seq=128`, or a spec file path -> (name or path, kwargs)."""
    name, sep, rest = text.partition(":")
    if sep and (Path(text).suffix == ".toml" and Path(text).is_file()):
        return text, {}
    kwargs: dict = {}
    for part in filter(None, rest.split(",")):
        m = _WORKLOAD.fullmatch(part.strip())
        if not m:
            from mpsearch.errors import UsageError

            raise UsageError(
                f"cannot parse workload {part!r} in --hardware {text!r}; "
                "write e.g. h100:batch=32 or h100:batch=8,seq=512"
            )
        kwargs["batch" if m.group(1) == "batch" else "seq_len"] = int(m.group(2))
    return name, kwargs


def _register_bundled() -> None:
    for path in bundled_spec_paths():
        spec = load_spec(path)
        cls = type(
            f"{re.sub(r'[^0-9A-Za-z]', '_', spec.name).title()}CostModel",
            (AnalyticalCostModel,),
            {"name": spec.name, "spec_path": str(path), "__doc__": f"{spec.title}: {spec.summary}"},
        )
        register_cost_model(cls)


_register_bundled()


def get(name: str | CostModel | None, **kwargs) -> CostModel | None:
    """The cost model registered as `name` (None: storage costs only).

    `name` may carry a workload, `h100:batch=32,seq=512`, or be a spec file (`my-h100.toml`, e.g. one
    written by `mpsearch hardware calibrate`); keyword arguments (`batch=`, `seq_len=`) override it.
    """
    if name is None or isinstance(name, CostModel):
        return name
    key, workload = parse_hardware(str(name))
    workload.update(kwargs)
    if key.endswith(".toml"):
        return AnalyticalCostModel(spec=key, **workload)
    return _REGISTRY.create(key, **workload)
