"""Why a search stopped when it did: the two halves of the shared stopping rule, read from the
validation trajectories a sweep's circuits record (`details.val_history`: step, validation KL,
expected sparsity at each evaluation).

The rule fires at the first evaluation where both hold: the expected sparsity is within
`sparsity_tol` of the target (in units of the edge budget) and validation KL has gone `patience`
evaluations without improving by more than `rel_tol`. Per run this prints and writes: the
warm-up, the step where each half first held, the largest overshoot of the expected sparsity past
the target (budget units; positive: sparser than asked), how many evaluations the plateau half
held while the sparsity half did not, and the KL gained after the first plateau.

    python benchmarks/rule_trajectories.py results/reference/sweep.csv [--out F.csv]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import pandas as pd

from hap.search.masks import SearchConfig, rule_fires


def trajectory_row(row: pd.Series, circuit: dict, rule: SearchConfig) -> dict:
    details = circuit.get("details", {})
    history = details.get("val_history") or []
    target = float(row["target_sparsity"])
    budget = 1.0 - target
    near_at = plateau_at = None
    plateau_only = 0
    kls = []
    for step, kl, expected in history:
        kls.append(kl)
        near = abs(expected - target) <= rule.sparsity_tol * budget
        plateau = rule_fires(kls, rule.patience, rule.rel_tol)
        near_at = near_at if near_at is not None or not near else step
        plateau_at = plateau_at if plateau_at is not None or not plateau else step
        plateau_only += int(plateau and not near)
    overshoot = max(((e - target) / budget for _, _, e in history), default=float("nan"))
    kl_at_plateau = next((kl for s, kl, _ in history if s == plateau_at), float("nan"))
    return {
        "method": row["method"],
        "target_sparsity": target,
        "seed": int(row["seed"]),
        "warmup": details.get("warmup"),
        "steps": int(row["steps"]),
        "stopped": row["stopped"],
        "n_candidates": details.get("n_candidates"),
        "first_near": near_at,
        "first_plateau": plateau_at,
        "plateau_not_near_evals": plateau_only,
        "max_overshoot_budgets": round(overshoot, 3),
        "val_kl_at_first_plateau": round(kl_at_plateau, 3),
        "val_kl_final": round(history[-1][1], 3) if history else float("nan"),
        "test_kl": round(float(row["kl"]), 3),
    }


def trajectories(sweep: Path, circuits: Path | None = None) -> pd.DataFrame:
    table = pd.read_csv(sweep)
    circuits = circuits or sweep.parent / "circuits"
    rule = SearchConfig()
    rows = []
    learned = table[table["method"].isin(["ep", "hap"]) & (table["status"] == "ok")]
    for _, row in learned.iterrows():
        path = circuits / f"{row['run_key']}.json"
        if path.is_file():
            rows.append(trajectory_row(row, json.loads(path.read_text()), rule))
    return pd.DataFrame(rows).sort_values(["target_sparsity", "method", "seed"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("sweep", type=Path)
    parser.add_argument("--circuits", type=Path, default=None)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    frame = trajectories(args.sweep, args.circuits)
    if frame.empty:
        sys.exit(f"no EP or HAP circuits with trajectories beside {args.sweep}")
    with pd.option_context("display.width", 200, "display.max_rows", 200):
        print(frame.to_string(index=False))
    if args.out:
        frame.to_csv(args.out, index=False)


if __name__ == "__main__":
    main()
