"""Edge Pruning (Bhaskar et al. 2024): hard-concrete masks over every edge of the graph."""

from __future__ import annotations

import time
from dataclasses import replace

from hap.circuit import Circuit, edges_for_sparsity
from hap.graph import Graph
from hap.masks import PruneConfig, binarize, learn_masks
from hap.tasks.base import Task


def discover(
    model, graph: Graph, task: Task, target_sparsity: float, seed: int = 0, **overrides
) -> Circuit:
    config = replace(PruneConfig(), **overrides)
    n_keep = edges_for_sparsity(graph, target_sparsity)
    start = time.perf_counter()
    result = learn_masks(model, graph, task.train, target_sparsity, config, seed)
    mask = binarize(graph, result.log_alpha, None, n_keep)
    return Circuit(
        method="ep",
        mask=mask,
        target_sparsity=target_sparsity,
        sparsity=graph.sparsity(mask),
        scores=result.log_alpha.cpu(),
        config={**config.as_dict(), "seed": seed},
        timings={"pruning": result.seconds, "total": time.perf_counter() - start},
    )
