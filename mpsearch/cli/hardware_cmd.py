"""`mpsearch hardware list|show NAME|calibrate CSV`: the accelerator cost models and their sourced specs."""

from __future__ import annotations

import argparse

import pandas as pd

from .. import hardware_models
from ..budget import format_metric
from ..errors import FormatError, UsageError
from ..formats import format_names, get_choice
from ..hardware_models._calibrate import fitted_lines
from ._common import info
from ._registry import command

# what `show --gemm` prices when --formats is not given: one of each family that exists
_SHOW_FORMATS = [
    "bf16",
    "int8",
    "int4_g128",
    "int8:int8",
    "int4:int8",
    "int4:int4",
    "fp8_e4m3",
    "fp8_e4m3:fp8_e4m3",
    "mxfp4:mxfp8_e4m3",
    "nvfp4:nvfp4",
]


def arguments(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="action", metavar="ACTION", parser_class=type(p))
    sub.required = True
    sub.add_parser("list", help="the bundled accelerator targets")
    s = sub.add_parser("show", help="a target's spec with every number's source, and what it can run")
    s.add_argument("name", metavar="NAME", help="a target from `mpsearch hardware list`, or a spec .toml")
    s.add_argument("--gemm", metavar="M,N,K", help="also price one (M x K) @ (K x N) product per format")
    s.add_argument("--formats", help="formats for --gemm (default: one of each family that exists)")
    c = sub.add_parser("calibrate", help="fit a target's efficiency factors to measured latencies")
    c.add_argument(
        "csv",
        metavar="CSV",
        help="measured latencies (columns m,n,k,choice,latency_s), e.g. from benchmarks/measure_kernels.py",
    )
    c.add_argument("--hardware", required=True, help="target to calibrate (name or spec .toml)")
    c.add_argument("-o", "--output", required=True, help="where to write the calibrated spec (.toml)")


@command("hardware", "list, show and calibrate accelerator cost models", arguments)
def run(args: argparse.Namespace) -> int:
    return {"list": _list, "show": _show, "calibrate": _calibrate}[args.action](args)


def _list(args) -> int:
    rows = []
    for name in hardware_models.cost_model_names():
        hw = hardware_models.get(name)
        spec = getattr(hw, "spec", None)
        rows.append(
            {
                "name": name,
                "kind": getattr(spec, "kind", ""),
                "target": getattr(spec, "title", ""),
                "paths": ", ".join(getattr(spec, "paths", {})),
            }
        )
    print(pd.DataFrame(rows).to_string(index=False))
    return 0


def _runnable(hw) -> tuple[list[str], list[str], list[str]]:
    native, emulated, unsupported = [], [], []
    for n in format_names():
        c = get_choice(n)
        if hw.unsupported(c):
            unsupported.append(n)
        else:
            (emulated if hw.route_key(c).endswith("+dequant") else native).append(n)
    return native, emulated, unsupported


def _show(args) -> int:
    hw = hardware_models.get(args.name)
    spec = hw.spec
    print(f"{spec.name}: {spec.title}\n  {spec.summary}")
    print("\nsources:")
    for k, v in spec.sources.items():
        print(f"  [{k}] {v}")
    print("\nnumbers:")
    print(
        pd.DataFrame(
            [
                {"key": k, "value": f"{n.value:.4g}", "unit": n.unit, "source": n.source}
                for k, n in spec.numbers()
            ]
        ).to_string(index=False, max_colwidth=90)
    )
    print("\ncompute paths:")
    print(
        pd.DataFrame(
            [
                {
                    "path": p.name,
                    "unit": p.unit,
                    "peak": f"{p.peak.value / 1e12:.4g} Top/s",
                    "native w/a": f"{'|'.join(p.weights)} / {'|'.join(p.acts)}",
                    "emulated w/a": "|".join(p.emulated_weights) + " / " + "|".join(p.emulated_acts),
                }
                for p in spec.paths.values()
            ]
        ).to_string(index=False)
    )
    native, emulated, unsupported = _runnable(hw)
    print(f"\nweight-only formats (16-bit activations), of {len(format_names())} registered:")
    print(f"  direct: {', '.join(native) or '-'}\n  dequantized/unpacked: {', '.join(emulated) or '-'}")
    print(f"  unsupported: {', '.join(unsupported) or '-'}")
    if args.gemm:
        _gemm_table(hw, args.gemm, args.formats)
    return 0


def _gemm_table(hw, shape: str, formats: str | None) -> None:
    try:
        m, n, k = (int(x) for x in shape.split(","))
    except ValueError:
        raise UsageError(f"--gemm takes M,N,K (three integers), got {shape!r}") from None
    names = formats.split(",") if formats else _SHOW_FORMATS
    rows = []
    for name in names:
        try:
            c = get_choice(name)
        except FormatError:
            if formats:
                raise
            continue  # a default format whose family is not registered in this install
        why = hw.unsupported(c)
        if why:
            rows.append({"format": c.name, "path": "unsupported"})
            continue
        g = hw.gemm_cost(m, n, k, c)
        rows.append(
            {
                "format": c.name,
                "path": g.path,
                "bound": g.bound,
                "latency": format_metric("latency", g.latency),
                "bytes": format_metric("memory", g.bytes),
                "energy": format_metric("energy", g.energy),
                "bops": format_metric("bops", g.bops),
            }
        )
    print(f"\none GEMM on {hw.spec.name}: M={m}, N={n}, K={k}")
    print(pd.DataFrame(rows).to_string(index=False, na_rep=""))


def _calibrate(args) -> int:
    cal = hardware_models.calibrate(args.hardware, args.csv, out=args.output)
    for note in cal.notes:
        info(note)
    b, a = cal.before, cal.after
    print(
        f"calibrated {cal.spec.name} on {a['n']} measured kernels: "
        f"MdAPE {b['mdape']:.1%} -> {a['mdape']:.1%}, Spearman {b['spearman']:.3f} -> {a['spearman']:.3f}"
    )
    for line in fitted_lines(cal):
        print(line)
    info(f"wrote {args.output} (use it with --hardware {args.output})")
    return 0
