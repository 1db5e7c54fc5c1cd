"""Edge Pruning (Bhaskar et al. 2024): hard-concrete masks over every edge of the graph."""

from __future__ import annotations

import time

from hap.engine.graph import Graph
from hap.io.circuit import Circuit
from hap.search.masks import SearchConfig, binarize, learn_masks, median_step
from hap.search.selection import edges_for_sparsity
from hap.tasks.base import Task


def discover(
    model, graph: Graph, task: Task, target_sparsity: float, seed: int, config: SearchConfig
) -> Circuit:
    n_keep = edges_for_sparsity(graph, target_sparsity)
    start = time.perf_counter()
    result = learn_masks(model, graph, task, target_sparsity, config, seed)
    selection = binarize(graph, result.log_alpha, None, n_keep, config)
    return Circuit.build(
        "ep",
        graph,
        selection.mask,
        target_sparsity,
        seed,
        config,
        timings={"pruning": result.seconds, "total": time.perf_counter() - start},
        scores=result.log_alpha.cpu(),
        steps=result.steps,
        details={
            "warmup_start": result.start,
            "warmup": result.warmup,
            "stopped": result.stopped,
            "val_history": result.val_history,
            "step_s": median_step(result.step_seconds),
        },
        selection=selection,
    )
