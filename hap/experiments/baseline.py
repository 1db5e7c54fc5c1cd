"""The two ends of every circuit's scale on a task: the full model and the empty circuit, on the
same test prompts as every other command for the seed (hap.experiments.runs.build_task)."""

from __future__ import annotations

import time

import torch

from hap.engine import metrics
from hap.engine.evaluate import evaluate_circuit
from hap.engine.graph import Graph
from hap.experiments.runs import precision_of
from hap.tasks.base import Task


def full_model_only(model, task: Task, reason: str) -> dict:
    """The full model's task metrics where the engine refuses the architecture: a model can be
    checked on a task even when its circuits cannot be searched."""
    start = time.perf_counter()
    device = next(model.parameters()).device
    data = task.test.to(device)
    with torch.no_grad():
        logits = torch.cat(
            [metrics.at_position(model(b.clean), b.position).float() for b in data.batches(32)]
        )
    return {
        "task": task.name,
        "model": model.name,
        "device": str(device),
        "precision": precision_of(model),
        "n_test": len(data),
        "full_accuracy": float(metrics.accuracy(logits, data).float().mean()),
        "full_logit_diff": float(metrics.logit_diff(logits, data).mean()),
        "circuits": f"refused: {reason}",
        "wall_s": time.perf_counter() - start,
    }


def run_baseline(model, graph: Graph, task: Task, ablation: str = "corrupted") -> dict:
    """The full model's and the empty circuit's metrics on the task's test split."""
    start = time.perf_counter()
    empty = torch.zeros(graph.n_edges, dtype=torch.bool)
    none = evaluate_circuit(model, graph, task.test, empty, ablation=ablation)
    full = evaluate_circuit(model, graph, task.test, None, ablation=ablation)
    return {
        "task": task.name,
        "model": model.name,
        "device": str(next(model.parameters()).device),
        "precision": precision_of(model),
        "ablation": ablation,
        "n_edges": graph.n_edges,
        **task.record(),
        "full_accuracy": full.accuracy,
        "full_logit_diff": full.logit_diff,
        "empty_kl": none.kl,
        "empty_logit_diff": none.logit_diff,
        "empty_accuracy": none.accuracy,
        "wall_s": time.perf_counter() - start,
    }
