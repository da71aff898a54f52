"""`mpsearch plan --max-evals/--time-limit`: the default measured search's budget from the command line."""

from __future__ import annotations

import json

from mpsearch.cli import main


def test_max_evals_bounds_the_default_search_and_is_reported(tmp_path, capsys):
    out = tmp_path / "plan.json"
    code = main(["plan", "--example", "digits-seq", "--budget", "3bits", "--formats", "int2,int4,int8",
                 "--search", "local", "--max-evals", "3", "--time-limit", "600", "-o", str(out)])
    assert code == 0
    plan = json.loads(out.read_text())
    summary = plan["measured"]["search_summary"]
    assert summary["evaluations"] == 3 and summary["stopped"] == "max_evals"
    assert len(plan["measured"]["search"]) == 3  # one row per measured plan
    assert summary["best_measured"] == min(r["measured"] for r in plan["measured"]["search"])
    assert summary["plan_minus_best"] <= 1e-12  # the guard only ever swaps in a better uniform plan
    assert plan["provenance"]["search"] == "local"


def test_bad_max_evals_is_a_one_line_error(capsys):
    code = main(["plan", "--example", "digits-seq", "--budget", "3bits", "--max-evals", "0"])
    err = capsys.readouterr().err.strip()
    assert code != 0 and "max_evals" in err and "\n" not in err
