"""`mpsearch formats`: the catalogue with bits per element, and close matches for a wrong name."""

from mpsearch.cli import main

ISSUE_NAMES = ("int4 int4_g128 int8_pt int4_asym_g64 fp8_e4m3 fp8_e5m2 fp6_e3m2 fp6_e2m3 fp4_e2m1_g32 "
               "mxfp8_e4m3 mxfp8_e5m2 mxfp6_e3m2 mxfp6_e2m3 mxfp4 mxint8 nvfp4 bf16 fp16").split()


def _rows(out: str) -> dict[str, list[str]]:
    lines = out.splitlines()
    table = lines[1 : next(i for i, line in enumerate(lines) if line.startswith("grammar"))]
    return {line.split()[0]: line.split() for line in table}


def test_lists_every_issue_format_with_bits(capsys):
    assert main(["formats"]) == 0
    rows = _rows(capsys.readouterr().out)
    for name in ISSUE_NAMES:
        assert name in rows, name
    assert rows["mxfp4"][3] == "4.2500" and rows["nvfp4"][3] == "4.5000" and rows["int4_g128"][3] == "4.1250"


def test_shape_and_choices(capsys):
    assert main(["formats", "nvfp4", "int8:int8", "--shape", "16x32"]) == 0
    rows = _rows(capsys.readouterr().out)
    assert rows["nvfp4"][3] == "4.5625"  # 4.5 + 32 / 512
    assert rows["int8:int8"][4] == "8.0"  # activation bits


def test_wrong_name_gets_close_matches(capsys):
    assert main(["formats", "mxfp5"]) == 1
    err = capsys.readouterr().err
    assert "unknown format 'mxfp5'" in err and "mxfp4" in err and "Traceback" not in err
    assert main(["formats", "--shape", "4096xk"]) == 2


def test_output_piped_into_head_is_not_an_error():
    """`mpsearch formats | head`: the reader leaves early; that is a clean exit, not an 'internal error'.
    (`true` leaves before mpsearch has imported torch, so the write always meets a closed pipe.)"""
    import subprocess
    import sys

    r = subprocess.run(f"'{sys.executable}' -m mpsearch formats | true; echo ${{PIPESTATUS[0]}}", shell=True,
                       capture_output=True, text=True, executable="/bin/bash")
    assert r.stdout.strip() == "0" and r.stderr == ""
