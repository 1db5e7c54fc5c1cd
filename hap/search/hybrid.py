"""HAP (Hybrid Attribution and Pruning, arXiv 2510.03282): EAP picks a generous candidate subgraph,
Edge Pruning searches only inside it.

The saving is structural: masks, optimiser state and the L0 terms exist only for candidate edges,
and the patching engine builds sender deltas and einsums only for candidate senders, receivers and
the (sender chunk, receiver group) blocks that hold a candidate edge (`EdgeMaskedForward(active=)`).
Every non-candidate edge is fixed to its corrupted value. The search itself is Edge Pruning's,
with the same config, warm-up formula and stopping rule (`hap.search.masks.SearchConfig`): the only
difference in budget is the one the method makes, a start closer to the target.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import torch

from hap.engine.graph import Graph
from hap.errors import ConfigError
from hap.io.circuit import Circuit
from hap.search.attribution import IG_POINTS, attribution_scores
from hap.search.masks import SearchConfig, binarize, learn_masks, median_step
from hap.search.selection import edges_for_sparsity, top_edges
from hap.tasks.base import Task


@dataclass(frozen=True)
class HAPConfig:
    """candidate_multiple: candidates = this many times the target edge budget (4 keeps ~24% of
    the graph at 94% sparsity, the paper's "roughly a quarter"). attribution_metric / ig_steps /
    ig_points: the stage-1 scorer (EAP by default). search: the shared Edge Pruning search, budget,
    stopping rule and ablation included (the attribution stage scores against the same
    ablation)."""

    candidate_multiple: float = 4.0
    attribution_metric: str = "logit_diff"
    ig_steps: int = 0
    ig_points: str = "left"
    search: SearchConfig = field(default_factory=SearchConfig)

    def validate(self) -> None:
        from hap.search.config import check_ranges

        check_ranges(
            self,
            {
                "candidate_multiple": (
                    self.candidate_multiple >= 1,
                    "must be >= 1, candidates = this many times the edge budget",
                ),
                "ig_steps": (self.ig_steps >= 0, "must be >= 0; 0 means plain EAP scores"),
            },
        )
        if self.attribution_metric not in ("logit_diff", "kl"):
            raise ConfigError(
                f"attribution_metric={self.attribution_metric!r}: choose logit_diff or kl"
            )
        if self.ig_points not in IG_POINTS:
            raise ConfigError(f"ig_points={self.ig_points!r}: choose {' or '.join(IG_POINTS)}")
        self.search.validate()


def candidate_edges(scores: torch.Tensor, n_keep: int, multiple: float) -> torch.Tensor:
    """Sorted indices of the ceil(multiple * n_keep) edges of largest |score|."""
    n = min(scores.numel(), math.ceil(multiple * n_keep))
    return top_edges(scores, n).nonzero().squeeze(1)


def discover(
    model, graph: Graph, task: Task, target_sparsity: float, seed: int, config: HAPConfig
) -> Circuit:
    n_keep = edges_for_sparsity(graph, target_sparsity)
    start = time.perf_counter()
    scores = attribution_scores(
        model,
        graph,
        task.train,
        config.attribution_metric,
        config.ig_steps,
        config.search.batch_size,
        config.search.ablation,
        config.ig_points,
    )
    candidates = candidate_edges(scores, n_keep, config.candidate_multiple)
    attributed = time.perf_counter()
    result = learn_masks(
        model, graph, task, target_sparsity, config.search, seed, active=candidates
    )
    selection = binarize(graph, result.log_alpha, candidates, n_keep, config.search)
    edge_scores = torch.full((graph.n_edges,), float("-inf"))
    edge_scores[candidates] = result.log_alpha.cpu()
    return Circuit.build(
        "hap",
        graph,
        selection.mask,
        target_sparsity,
        seed,
        config,
        timings={
            "attribution": attributed - start,
            "pruning": result.seconds,
            "total": time.perf_counter() - start,
        },
        scores=edge_scores,
        steps=result.steps,
        details={
            "n_candidates": int(candidates.numel()),
            "warmup": result.warmup,
            "stopped": result.stopped,
            "val_history": result.val_history,
            "step_s": median_step(result.step_seconds),
        },
        selection=selection,
    )
