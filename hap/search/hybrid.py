"""HAP (Hybrid Attribution and Pruning, arXiv 2510.03282): EAP picks a generous candidate subgraph,
Edge Pruning searches only inside it.

The saving is structural: masks, optimiser state and the L0 terms exist only for candidate edges,
and the patching engine builds sender deltas and einsums only for candidate senders, receivers and
the (sender chunk, receiver group) blocks that hold a candidate edge (`EdgeMaskedForward(active=)`).
Every non-candidate edge is fixed to its corrupted value. The search itself is Edge Pruning's,
with the same config, warm-up formula and stopping rule (`hap.search.masks.SearchConfig`): the only
difference in budget is the one the method makes, a start closer to the target.

Stage 1's scorer (`attribute`) is EAP, EAP-IG (ig_steps > 0) or the mean-rank ensemble of the
two (`ensemble`, hap.search.ranking); the warm-started variants (hap.search.warm) share it and
`masked_circuit`, the search-and-select stage.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import torch
from torch import Tensor

from hap.engine.graph import Graph
from hap.errors import ConfigError
from hap.io.circuit import Circuit
from hap.search import ranking
from hap.search.attribution import IG_POINTS, attribution_scores
from hap.search.masks import SearchConfig, binarize, learn_masks, median_step
from hap.search.selection import edges_for_sparsity, top_edges
from hap.tasks.base import Task, TaskData


@dataclass(frozen=True)
class HAPConfig:
    """candidate_multiple: candidates = this many times the target edge budget (4 keeps ~24% of
    the graph at 94% sparsity, the paper's "roughly a quarter"). attribution_metric / ig_steps /
    ig_points / ensemble: the stage-1 scorer (`attribute`; EAP by default). search: the shared
    Edge Pruning search, budget, stopping rule and ablation included (the attribution stage
    scores against the same ablation)."""

    candidate_multiple: float = 4.0
    attribution_metric: str = "logit_diff"
    ig_steps: int = 0
    ig_points: str = "left"
    ensemble: bool = False
    search: SearchConfig = field(default_factory=SearchConfig)

    def validate(self) -> None:
        check_scorer(
            self,
            {
                "candidate_multiple": (
                    self.candidate_multiple >= 1,
                    "must be >= 1, candidates = this many times the edge budget",
                ),
            },
        )
        self.search.validate()


def check_scorer(config, rules: dict[str, tuple[bool, str]]) -> None:
    """Refuse, in one ConfigError, `config`'s fields out of `rules` (hap.search.config.
    check_ranges) and a bad stage-1 scorer: any config with attribution_metric, ig_steps,
    ig_points and ensemble fields (HAP's and the warm variants')."""
    from hap.search.config import check_ranges

    check_ranges(
        config,
        {**rules, "ig_steps": (config.ig_steps >= 0, "must be >= 0; 0 means plain EAP scores")},
    )
    if config.attribution_metric not in ("logit_diff", "kl"):
        raise ConfigError(
            f"attribution_metric={config.attribution_metric!r}: choose logit_diff or kl"
        )
    if config.ig_points not in IG_POINTS:
        raise ConfigError(f"ig_points={config.ig_points!r}: choose {' or '.join(IG_POINTS)}")
    if config.ensemble and config.ig_steps < 1:
        raise ConfigError(
            "ensemble=true averages EAP's and EAP-IG's ranks and needs EAP-IG's budget: "
            "ig_steps >= 1 (e.g. --set ig_steps=5)"
        )


def attribute(model, graph: Graph, data: TaskData, config) -> Tensor:
    """[n_edges] the stage-1 ranking of `config`'s scorer (any config `check_scorer` accepts),
    to be ranked by |value|: EAP's scores (ig_steps = 0), EAP-IG's (ig_steps > 0), or with
    `ensemble` the `ranking.priority` of each edge's mean rank by EAP's and by EAP-IG's |score|
    (hap.search.ranking). Scored on `data` against the search's ablation, in its batch size."""
    search = config.search

    def scores(ig_steps: int) -> Tensor:
        return attribution_scores(
            model,
            graph,
            data,
            config.attribution_metric,
            ig_steps,
            search.batch_size,
            search.ablation,
            config.ig_points,
        )

    if not config.ensemble:
        return scores(config.ig_steps)
    return ranking.priority(ranking.mean_rank(scores(0), scores(config.ig_steps)))


def candidate_edges(scores: torch.Tensor, n_keep: int, multiple: float) -> torch.Tensor:
    """Sorted indices of the ceil(multiple * n_keep) edges of largest |score|."""
    n = min(scores.numel(), math.ceil(multiple * n_keep))
    return top_edges(scores, n).nonzero().squeeze(1)


def discover(
    model, graph: Graph, task: Task, target_sparsity: float, seed: int, config: HAPConfig
) -> Circuit:
    n_keep = edges_for_sparsity(graph, target_sparsity)
    start = time.perf_counter()
    scores = attribute(model, graph, task.train, config)
    candidates = candidate_edges(scores, n_keep, config.candidate_multiple)
    return masked_circuit(
        "hap",
        model,
        graph,
        task,
        target_sparsity,
        seed,
        config,
        start,
        candidates,
        details={"n_candidates": int(candidates.numel())},
    )


def masked_circuit(
    method: str,
    model,
    graph: Graph,
    task: Task,
    target_sparsity: float,
    seed: int,
    config,
    start: float,
    active: Tensor | None = None,
    init_log_alpha: Tensor | None = None,
    details: dict | None = None,
) -> Circuit:
    """The search stage of HAP and its warm variants: `learn_masks` over `active` (None: every
    edge) from `init_log_alpha` (None: the search's uniform init), the circuit of the budget's
    edges by learned log-alpha, and its record. `config` (with a `search` field) is recorded;
    `start`: perf_counter() before the attribution stage, whose seconds are those until now.
    Circuit scores: learned log-alpha, -inf on inactive edges. `details` go first in the
    circuit's details, then the search's: the sparsity its target warmed up from
    (`warmup_start`) and over how many steps (`warmup`), why it stopped, its validation
    history and median step seconds."""
    search = config.search
    n_keep = edges_for_sparsity(graph, target_sparsity)
    attributed = time.perf_counter()
    result = learn_masks(
        model, graph, task, target_sparsity, search, seed, active, init_log_alpha=init_log_alpha
    )
    selection = binarize(graph, result.log_alpha, active, n_keep, search)
    edge_scores = torch.full((graph.n_edges,), float("-inf"))
    edge_scores[slice(None) if active is None else active] = result.log_alpha.cpu()
    return Circuit.build(
        method,
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
            **(details or {}),
            "warmup_start": result.start,
            "warmup": result.warmup,
            "stopped": result.stopped,
            "val_history": result.val_history,
            "step_s": median_step(result.step_seconds),
        },
        selection=selection,
    )
