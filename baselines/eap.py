"""EAP (Syed et al. 2023): rank edges by |attribution score|, keep the top ones, drop dangling edges."""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass

from hap.attribution import attribution_scores
from hap.circuit import Circuit, edges_for_sparsity, prune_dangling, top_edges
from hap.graph import Graph
from hap.tasks.base import Task


@dataclass(frozen=True)
class EAPConfig:
    metric: str = "logit_diff"  # KL has zero gradient at the clean run, so it is not the default
    ig_steps: int = 0  # > 0: EAP-IG
    batch_size: int = 32
    drop_dangling: bool = True


def discover(
    model, graph: Graph, task: Task, target_sparsity: float, seed: int = 0, **overrides
) -> Circuit:
    """Attribution on the train split; `seed` is unused (EAP is deterministic) but recorded."""
    config = EAPConfig(**overrides)
    n_keep = edges_for_sparsity(graph, target_sparsity)
    start = time.perf_counter()
    scores = attribution_scores(
        model, graph, task.train, config.metric, config.ig_steps, config.batch_size
    )
    attributed = time.perf_counter()
    mask = top_edges(scores, n_keep)
    if config.drop_dangling:
        mask = prune_dangling(graph, mask)
    return Circuit(
        method="eap-ig" if config.ig_steps > 0 else "eap",
        mask=mask,
        target_sparsity=target_sparsity,
        sparsity=graph.sparsity(mask),
        scores=scores,
        config={**asdict(config), "seed": seed},
        timings={"attribution": attributed - start, "total": time.perf_counter() - start},
    )
