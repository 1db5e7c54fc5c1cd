"""What a sweep's table says at a glance: means per point, failures, and areas over the swept
sparsities."""

from __future__ import annotations

import numpy as np
import pandas as pd


def failures(table: pd.DataFrame) -> pd.DataFrame:
    """The rows of runs that failed, or failed once and were retried, with their reasons."""
    return table[table["status"].isin(["failed", "retried"])][
        ["method", "task", "seed", "target_sparsity", "status", "error"]
    ]


# The means a sweep's summary shows (and the README's sweep table: hap.analysis.report).
SUMMARY_COLUMNS = [
    "live_edges",
    "sparsity",
    "steps",
    "kl",
    "logit_diff",
    "accuracy",
    "faithfulness",
    "wall_s",
]


def swept_areas(table: pd.DataFrame) -> pd.DataFrame:
    """Per method and task, over the sweep's own sparsities (x = 1 - sparsity, normalised by
    the x range, averaged over seeds): `faith_area`, the area under the faithfulness curve
    (higher is better), and `gap_area`, the area between it and 1 (lower is better). These are
    NOT MIB's CPR / CMD, which take MIB's grid of edge fractions from 0.1% to 100% (`hap mib`);
    they summarise only the 90-99% range swept here."""
    rows = []
    table = table[table["status"] == "ok"]
    for (method, task), group in table.groupby(["method", "task"]):
        faith, gap = [], []
        for _, runs in group.groupby("seed"):
            runs = runs.sort_values("sparsity", ascending=False)
            x = 1.0 - runs["sparsity"].to_numpy()
            y = runs["faithfulness"].to_numpy()
            if len(x) < 2 or x[-1] == x[0]:
                continue
            span = x[-1] - x[0]
            faith.append(np.trapezoid(y, x) / span)
            gap.append(np.trapezoid(np.abs(1.0 - y), x) / span)
        rows.append(
            {
                "method": method,
                "task": task,
                "faith_area": float(np.mean(faith)) if faith else float("nan"),
                "gap_area": float(np.mean(gap)) if gap else float("nan"),
            }
        )
    return pd.DataFrame(rows)


def summary(table: pd.DataFrame) -> pd.DataFrame:
    """One screen: means over seeds per method, task and target sparsity."""
    table = table[table["status"] == "ok"]
    return (
        table.groupby(["task", "method", "target_sparsity"])[SUMMARY_COLUMNS]
        .mean()
        .round(3)
        .reset_index()
    )
