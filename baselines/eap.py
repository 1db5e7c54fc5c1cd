"""EAP (Syed et al. 2023): rank edges by |attribution score|; the shared selection makes the circuit."""

from __future__ import annotations

import time
from dataclasses import dataclass

from hap.engine.ablation import Ablation, check_ablation
from hap.engine.graph import Graph
from hap.errors import ConfigError
from hap.io.circuit import Circuit
from hap.search.attribution import IG_POINTS, attribution_scores
from hap.search.selection import check_selection, edges_for_sparsity, select
from hap.tasks.base import Task


@dataclass(frozen=True)
class EAPConfig:
    """metric: what the gradient is taken of (KL has zero gradient at the clean run, so it is not
    the default). ig_steps: the budget of EAP-IG (0: plain EAP); ig_points: where EAP-IG takes
    its gradients ("left": alpha = 0 .. (k-1)/k, the EAP-IG library's and MIB's rule; "right":
    1/k .. 1; hap.search.attribution). ablation: what a removed edge carries, in the scores and in
    which edges count as live alike. selection: how the ranking by |score| becomes a circuit of
    the budget's live edges (hap.search.selection; "topn" is MIB's top-n-then-prune)."""

    metric: str = "logit_diff"
    ig_steps: int = 0
    ig_points: str = "left"
    batch_size: int = 32
    selection: str = "refill"
    ablation: str = Ablation.CORRUPTED.value

    def validate(self) -> None:
        from hap.search.attribution import METRICS

        if self.metric not in METRICS:
            raise ConfigError(f"metric={self.metric!r}: choose one of {', '.join(METRICS)}")
        from hap.search.config import check_ranges

        check_ranges(
            self,
            {
                "ig_steps": (self.ig_steps >= 0, "must be >= 0; 0 means plain EAP"),
                "batch_size": (self.batch_size >= 1, "must be >= 1"),
            },
        )
        if self.ig_points not in IG_POINTS:
            raise ConfigError(f"ig_points={self.ig_points!r}: choose {' or '.join(IG_POINTS)}")
        check_ablation(self.ablation)
        check_selection(self.selection)


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
    selection = select(graph, scores.abs(), n_keep, config.ablation, config.selection)
    return Circuit.build(
        "eap-ig" if config.ig_steps > 0 else "eap",
        graph,
        selection.mask,
        target_sparsity,
        seed,
        config,
        timings={"attribution": attributed - start, "total": time.perf_counter() - start},
        scores=scores,
        selection=selection,
    )
