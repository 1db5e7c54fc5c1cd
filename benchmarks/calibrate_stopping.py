"""Calibrate the shared stopping rule (hap.search.masks.SearchConfig) on validation data.

    python benchmarks/calibrate_stopping.py [--threads 2] [--out results/calibration]

Only calibration seeds (100, 101: no test and no reference result uses them) and only the
validation split: the task is built with no test prompts at all. For each method (EP, HAP),
target sparsity and warm-up rate, one long search records the validation KL of the circuit it
would return (every `eval_every` steps after warm-up) and its expected sparsity. The rule does not
change the search's path, only where it ends, so every (patience, rel_tol) pair is then replayed on
the recorded trajectories: where would it have stopped, and how far is the circuit there from the
level the search settles at (the mean validation KL over its last 100 steps)?

Writes trajectories.csv (one row per evaluation) and stopping.csv (one row per rule setting:
mean / max steps and the ratio of validation KL at the stop to the settled level, per method),
and prints the cheapest setting whose stops are all within 10% of the settled level, averaging
within 5%.
"""

from __future__ import annotations

import argparse
import itertools
from pathlib import Path

import pandas as pd
import torch

from hap.engine.graph import Graph
from hap.experiments.registry import get_backend
from hap.models import load_model
from hap.search.masks import SearchConfig, rule_fires
from hap.tasks import make_task

SEEDS = (100, 101)
PATIENCE = (2, 3, 4, 5, 6, 8)
REL_TOL = (0.0, 0.01, 0.02, 0.05, 0.1)


def record(args) -> pd.DataFrame:
    model = load_model(device="cpu")
    graph = Graph.from_model(model)
    rows = []
    for seed in SEEDS:
        task = make_task("ioi", model.tokenizer, n_train=64, n_val=64, n_test=0, seed=seed)
        for sparsity, rate, method in itertools.product(args.sparsities, args.rates, args.methods):
            settings = {
                "max_steps": args.max_steps,
                "patience": 10**6,  # never fires: record the whole trajectory
                "warmup_per_sparsity": rate,
            }
            circuit = get_backend(method)(model, graph, task, sparsity, seed=seed, **settings)
            seconds = circuit.timings["pruning"]
            for step, kl, expected in circuit.details["val_history"]:
                rows.append(
                    {
                        "method": method,
                        "target_sparsity": sparsity,
                        "seed": seed,
                        "warmup_per_sparsity": rate,
                        "warmup": circuit.details["warmup"],
                        "step": step,
                        "val_kl": kl,
                        "expected_sparsity": expected,
                        "seconds_per_step": seconds / circuit.steps,
                    }
                )
            print(
                f"{method} {sparsity} seed {seed} rate {rate}: warm-up {circuit.details['warmup']}, "
                f"last val KL {rows[-1]['val_kl']:.3f}, {seconds:.0f} s, "
                f"{circuit.n_edges} edges",
                flush=True,
            )
    return pd.DataFrame(rows)


def replay(trajectories: pd.DataFrame, sparsity_tol: float) -> pd.DataFrame:
    """Every (rate, patience, rel_tol): where the rule stops each recorded search."""
    rows = []
    runs = trajectories.groupby(["warmup_per_sparsity", "method", "target_sparsity", "seed"])
    for (rate, method, target, seed), run in runs:
        run = run.sort_values("step")
        settled = run[run["step"] > run["step"].max() - 100]["val_kl"].mean()
        near = ((run["expected_sparsity"] - target).abs() <= sparsity_tol * (1 - target)).tolist()
        kls = run["val_kl"].tolist()
        for patience, rel_tol in itertools.product(PATIENCE, REL_TOL):
            stop = len(kls) - 1
            for i in range(len(kls)):
                if near[i] and rule_fires(kls[: i + 1], patience, rel_tol):
                    stop = i
                    break
            rows.append(
                {
                    "warmup_per_sparsity": rate,
                    "patience": patience,
                    "rel_tol": rel_tol,
                    "method": method,
                    "target_sparsity": target,
                    "seed": seed,
                    "stop_step": int(run["step"].iloc[stop]),
                    "kl_ratio": kls[stop] / settled,
                }
            )
    return pd.DataFrame(rows)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument(
        "--sparsities", type=lambda s: [float(x) for x in s.split(",")], default=[0.94, 0.98]
    )
    parser.add_argument(
        "--rates", type=lambda s: [float(x) for x in s.split(",")], default=[80.0, 160.0]
    )
    parser.add_argument(
        "--methods", type=lambda s: s.split(","), default=["ep", "hap", "ep-warm", "hap-warm"]
    )
    parser.add_argument("--max-steps", type=int, default=500)
    parser.add_argument("--sparsity-tol", type=float, default=0.1)
    parser.add_argument("--out", type=Path, default=Path("results/calibration"))
    parser.add_argument("--replay-only", action="store_true", help="reuse trajectories.csv")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / "trajectories.csv"
    trajectories = pd.read_csv(path) if args.replay_only else record(args)
    trajectories.to_csv(path, index=False)
    stops = replay(trajectories, args.sparsity_tol)
    grid = (
        stops.groupby(["warmup_per_sparsity", "patience", "rel_tol", "method"])
        .agg(
            mean_steps=("stop_step", "mean"),
            max_steps=("stop_step", "max"),
            mean_kl_ratio=("kl_ratio", "mean"),
            max_kl_ratio=("kl_ratio", "max"),
        )
        .reset_index()
    )
    grid.to_csv(args.out / "stopping.csv", index=False)
    setting = grid.groupby(["warmup_per_sparsity", "patience", "rel_tol"]).agg(
        mean_steps=("mean_steps", "mean"),
        mean_kl_ratio=("mean_kl_ratio", "max"),
        max_kl_ratio=("max_kl_ratio", "max"),
    )
    ok = setting[(setting["mean_kl_ratio"] <= 1.05) & (setting["max_kl_ratio"] <= 1.10)]
    with pd.option_context("display.width", 140, "display.max_rows", 400):
        print(setting.round(3).to_string())
        print()
        print("cheapest setting within 5% on average, 10% at worst, of the settled level:")
        print(ok.sort_values("mean_steps").head(1).round(3).to_string() if len(ok) else "none")
        default = SearchConfig()
        chosen = stops[
            (stops["warmup_per_sparsity"] == default.warmup_per_sparsity)
            & (stops["patience"] == default.patience)
            & (stops["rel_tol"] == default.rel_tol)
        ]
        spread = chosen.groupby(["method", "target_sparsity"]).agg(
            stop_steps=("stop_step", lambda x: ", ".join(str(v) for v in x)),
            spread=("stop_step", lambda x: int(x.max() - x.min())),
            kl_ratios=("kl_ratio", lambda x: ", ".join(f"{v:.2f}" for v in x)),
        )
        print()
        print("the defaults' stops per seed, their spread, and val KL at the stop / settled:")
        print(spread.to_string())
        spread.to_csv(args.out / "default_stops.csv")


if __name__ == "__main__":
    main()
