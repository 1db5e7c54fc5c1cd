"""Ablation behind HAP's defaults: candidate-set size x pruning steps, against Edge Pruning.

    python benchmarks/hap_ablation.py [--threads 2] [--out results/hap_ablation.csv]

IOI on the embedded model at 94% sparsity, one process, pinned threads. Prints one row per run
(KL / logit difference on the test split, wall seconds) and writes them as CSV.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import pandas as pd
import torch

from hap.evaluate import evaluate_circuit
from hap.graph import Graph
from hap.models import load_model
from hap.registry import get_backend
from hap.tasks import make_task


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--sparsity", type=float, default=0.94)
    parser.add_argument("--multiples", default="3,4,6")
    parser.add_argument("--steps", default="100,120,150")
    parser.add_argument("--out", type=Path, default=Path("results/hap_ablation.csv"))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    model = load_model(device="cpu")
    graph = Graph.from_model(model)
    task = make_task("ioi", model.tokenizer, n_train=64, n_val=32, n_test=200, seed=0)
    runs = [("ep", {})] + [
        ("hap", {"candidate_multiple": float(m), "steps": int(s), "warmup": int(s) // 2})
        for s in args.steps.split(",")
        for m in args.multiples.split(",")
    ]
    rows = []
    for method, config in runs:
        start = time.perf_counter()
        circuit = get_backend(method)(model, graph, task, args.sparsity, seed=0, **config)
        wall = time.perf_counter() - start
        result = evaluate_circuit(model, graph, task.test, circuit.mask)
        rows.append(
            {
                "method": method,
                **config,
                "wall_s": wall,
                "kl": result.kl,
                "logit_diff": result.logit_diff,
                "accuracy": result.accuracy,
                "threads": args.threads,
            }
        )
        print(rows[-1], flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(rows).to_csv(args.out, index=False)


if __name__ == "__main__":
    main()
