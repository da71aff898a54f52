"""`mpsearch hardware list|show|calibrate` end to end through the CLI entry point."""

from __future__ import annotations

import pandas as pd

from mpsearch.cli import main
from mpsearch.hardware_models import get, load_spec


def test_list(capsys):
    assert main(["hardware", "list"]) == 0
    out = capsys.readouterr().out
    for name in ("h100", "a100", "orin", "xeon-8380", "m55-u55"):
        assert name in out


def test_show_prints_sources_and_prices_a_gemm(capsys):
    assert (
        main(["hardware", "show", "h100", "--gemm", "1,4096,4096", "--formats", "bf16,int4_g128,int8:int8"])
        == 0
    )
    out = capsys.readouterr().out
    assert "3.35TB/s" in out and "989.4" in out and "[horowitz]" in out
    assert "bf16+dequant" in out and "memory" in out
    assert "M=1, N=4096, K=4096" in out


def test_show_unknown_target_is_one_line(capsys):
    assert main(["hardware", "show", "tpu-v9"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("mpsearch: error: unknown hardware 'tpu-v9'") and err.count("\n") == 1


def test_calibrate_writes_a_spec(tmp_path, capsys):
    h = get("a100")
    rows = [
        {"m": m, "n": n, "k": 4096, "choice": c, "latency_s": 1.3 * h.gemm_cost(m, n, 4096, c).latency}
        for m in (1, 64, 2048)
        for n in (1024, 8192)
        for c in ("bf16", "int8:int8")
    ]
    csv = tmp_path / "lat.csv"
    pd.DataFrame(rows).to_csv(csv, index=False)
    out = tmp_path / "a100-cal.toml"
    assert main(["hardware", "calibrate", str(csv), "--hardware", "a100", "-o", str(out)]) == 0
    text = capsys.readouterr().out
    assert "calibrated a100-calibrated on 12 measured kernels" in text
    spec = load_spec(out)
    assert spec.paths["bf16"].efficiency.source.startswith("calibrated")
    assert main(["hardware", "show", str(out)]) == 0
