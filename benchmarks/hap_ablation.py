"""Ablation behind HAP's candidate-set size: candidate multiple x step budget, against EP.

    python benchmarks/hap_ablation.py [--threads 2] [--out results/calibration/hap_candidates.csv]

IOI on the embedded model at 94% sparsity, one process, pinned threads, fixed step budgets
(warm-up by the shared formula) so every cell has the same search budget as EP's at that budget.
Scored on the validation split of a calibration seed (101): no test prompt and no reference seed
informs the default. Prints one row per run and writes them as CSV.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import pandas as pd
import torch

from hap.engine.evaluate import evaluate_circuit
from hap.engine.graph import Graph
from hap.experiments.registry import get_backend
from hap.models import load_model
from hap.tasks import make_task


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--sparsity", type=float, default=0.94)
    parser.add_argument("--multiples", default="2,4,8")
    parser.add_argument("--steps", default="50,100,200")
    parser.add_argument("--seed", type=int, default=101)
    parser.add_argument("--out", type=Path, default=Path("results/calibration/hap_candidates.csv"))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    model = load_model(device="cpu")
    graph = Graph.from_model(model)
    task = make_task("ioi", model.tokenizer, n_train=64, n_val=64, n_test=0, seed=args.seed)
    runs = [
        (method, {"steps": int(s)} | ({"candidate_multiple": float(m)} if method == "hap" else {}))
        for s in args.steps.split(",")
        for method, m in [("ep", 0)] + [("hap", m) for m in args.multiples.split(",")]
    ]
    rows = []
    for method, settings in runs:
        start = time.perf_counter()
        circuit = get_backend(method)(model, graph, task, args.sparsity, seed=args.seed, **settings)
        wall = time.perf_counter() - start
        result = evaluate_circuit(model, graph, task.val, circuit.mask)
        rows.append(
            {
                "method": method,
                **settings,
                "wall_s": wall,
                "val_kl": result.kl,
                "val_logit_diff": result.logit_diff,
                "threads": args.threads,
            }
        )
        print(rows[-1], flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(rows).to_csv(args.out, index=False)


if __name__ == "__main__":
    main()
