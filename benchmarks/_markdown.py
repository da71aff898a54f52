"""A markdown table from a DataFrame without the optional `tabulate` dependency."""

from __future__ import annotations

import pandas as pd


def markdown(frame: pd.DataFrame, digits: int = 4) -> str:
    def cell(v) -> str:
        if isinstance(v, float):
            return f"{v:.{digits}g}"
        return str(v).replace("|", "\\|")

    head = "| " + " | ".join(map(str, frame.columns)) + " |"
    rule = "|" + "|".join("---" for _ in frame.columns) + "|"
    body = ["| " + " | ".join(cell(v) for v in row) + " |" for row in frame.itertuples(index=False)]
    return "\n".join([head, rule, *body]) + "\n"
