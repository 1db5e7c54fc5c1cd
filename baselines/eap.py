"""EAP (Syed et al. 2023): rank edges by |attribution score|, keep the top ones, drop dangling edges."""

from __future__ import annotations

import time
from dataclasses import dataclass

from hap.attribution import IG_POINTS, attribution_scores
from hap.circuit import Circuit, edges_for_sparsity, prune_dangling, top_edges
from hap.config import ConfigError
from hap.graph import Graph
from hap.patching import Ablation, check_ablation
from hap.tasks.base import Task


@dataclass(frozen=True)
class EAPConfig:
    """metric: what the gradient is taken of (KL has zero gradient at the clean run, so it is not
    the default). ig_steps: the budget of EAP-IG (0: plain EAP); ig_points: where EAP-IG takes
    its gradients ("left": alpha = 0 .. (k-1)/k, the EAP-IG library's and MIB's rule; "right":
    1/k .. 1; hap.attribution). ablation: what a removed edge carries, in the scores and in the
    dangling-edge pruning alike."""

    metric: str = "logit_diff"
    ig_steps: int = 0
    ig_points: str = "left"
    batch_size: int = 32
    drop_dangling: bool = True
    ablation: str = Ablation.CORRUPTED.value

    def validate(self) -> None:
        if self.metric not in ("logit_diff", "kl"):
            raise ConfigError(f"metric={self.metric!r}: choose logit_diff or kl")
        if self.ig_steps < 0 or self.batch_size < 1:
            raise ConfigError("ig_steps must be >= 0 and batch_size >= 1")
        if self.ig_points not in IG_POINTS:
            raise ConfigError(f"ig_points={self.ig_points!r}: choose {' or '.join(IG_POINTS)}")
        check_ablation(self.ablation)


def discover(
    model, graph: Graph, task: Task, target_sparsity: float, seed: int, config: EAPConfig
) -> Circuit:
    """Attribution on the train split; `seed` is unused (EAP is deterministic) but recorded."""
    n_keep = edges_for_sparsity(graph, target_sparsity)
    start = time.perf_counter()
    scores = attribution_scores(
        model,
        graph,
        task.train,
        config.metric,
        config.ig_steps,
        config.batch_size,
        config.ablation,
        config.ig_points,
    )
    attributed = time.perf_counter()
    mask = top_edges(scores, n_keep)
    if config.drop_dangling:
        mask = prune_dangling(graph, mask, config.ablation)
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
