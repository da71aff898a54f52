"""`mpsearch sensitivity` prints the table and writes it as CSV."""

import pandas as pd

from mpsearch.cli import main


def test_sensitivity_verb_writes_the_table(tmp_path, capsys):
    out = tmp_path / "t.csv"
    assert (
        main(
            [
                "sensitivity",
                "--example",
                "digits-cnn",
                "--estimator",
                "fisher",
                "--formats",
                "int2,int4",
                "-o",
                str(out),
            ]
        )
        == 0
    )
    t = pd.read_csv(out)
    assert len(t) == 10 and set(t.format) == {"int2", "int4"} and (t.omega > 0).all()
    assert "features.0" in capsys.readouterr().out


def test_zeroq_data_and_bad_inputs(tmp_path, capsys):
    out = tmp_path / "z.csv"
    assert (
        main(
            [
                "sensitivity",
                "--example",
                "digits-cnn",
                "--data",
                "zeroq",
                "--formats",
                "int4",
                "-o",
                str(out),
                "--no-cache",
            ]
        )
        == 0
    )
    assert "estimator measured" in capsys.readouterr().err and len(pd.read_csv(out)) == 5
    assert main(["sensitivity", "--example", "digits-cnn", "--estimator", "nope", "-o", str(out)]) == 2
    assert "unknown estimator" in capsys.readouterr().err
    assert main(["sensitivity", "--example", "digits-cnn", "--set", "method=lanczos", "-o", str(out)]) == 2
