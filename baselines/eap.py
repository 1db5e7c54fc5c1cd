"""EAP (Syed et al. 2023): rank edges by |attribution score|, keep the top ones, drop dangling edges."""

from __future__ import annotations

import time
from dataclasses import dataclass

from hap.attribution import attribution_scores
from hap.circuit import Circuit, edges_for_sparsity, prune_dangling, top_edges
from hap.graph import Graph
from hap.tasks.base import Task


@dataclass(frozen=True)
class EAPConfig:
    """metric: what the gradient is taken of (KL has zero gradient at the clean run, so it is not
    the default). ig_steps: the budget of EAP-IG (0: plain EAP)."""

    metric: str = "logit_diff"
    ig_steps: int = 0
    batch_size: int = 32
    drop_dangling: bool = True

    def validate(self) -> None:
        if self.metric not in ("logit_diff", "kl"):
            raise ValueError(f"metric={self.metric!r}: choose logit_diff or kl")
        if self.ig_steps < 0 or self.batch_size < 1:
            raise ValueError("ig_steps must be >= 0 and batch_size >= 1")


def discover(
    model, graph: Graph, task: Task, target_sparsity: float, seed: int, config: EAPConfig
) -> Circuit:
    """Attribution on the train split; `seed` is unused (EAP is deterministic) but recorded."""
    n_keep = edges_for_sparsity(graph, target_sparsity)
    start = time.perf_counter()
    scores = attribution_scores(
        model, graph, task.train, config.metric, config.ig_steps, config.batch_size
    )
    attributed = time.perf_counter()
    mask = top_edges(scores, n_keep)
    if config.drop_dangling:
        mask = prune_dangling(graph, mask)
    return Circuit.build(
        "eap-ig" if config.ig_steps > 0 else "eap",
        graph,
        mask,
        target_sparsity,
        seed,
        config,
        timings={"attribution": attributed - start, "total": time.perf_counter() - start},
        scores=scores,
    )
