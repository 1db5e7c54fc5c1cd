"""Warm-started Edge Pruning: the search's initial log-alphas from an attribution ranking.

`ep-warm` searches every edge, as Edge Pruning does; `hap-warm` searches HAP's candidates. Both
start each edge's mask from its rank by the stage-1 scorer (`hap.search.hybrid.attribute`: EAP,
EAP-IG or their mean-rank ensemble) instead of from one value for all, and are otherwise the
shared search: the same SearchConfig, stopping rule and selection as EP and HAP. Every edge
searched stays trainable: the map is bounded below, so no edge starts beyond the reach of its
gradient.

Three parts are designed together (a naive start, log-alpha +3 for the top 2x budget and -3 for
the rest with the target warming up from 0, lost to EP at every step count on IOI at 94%):

- The map (`initial_log_alpha`): log-alpha(r) = floor + (high - floor) * sigmoid((c - r) / w) of
  the edge's rank r (0 = best, hap.search.ranking), w = spread * budget edges, high = the
  search's init_log_alpha (EP's start for every edge), and the centre c solved so that the
  expected number of kept edges, sum of keep_probability(log-alpha), is kept_multiple * budget.
  Smooth and strictly decreasing in rank (until float32 rounding merges the far tail at floor).
- The warm-up's start: the initial masks' expected sparsity (`learn_masks` with
  init_log_alpha), 1 - kept_multiple * budget / n_edges, not 0 nor the candidates' sparsity:
  the sparsity gap is exactly 0 at the first step.
- The lambdas: unchanged, both start at 0 as in EP and stay there through the first step. AdamW
  moves them by about lambda_lr per step in the direction of the gap's sign, so with a target
  that started at 0 they grew for the whole warm-up and pushed masks already near the budget
  back towards density; from the masks' own sparsity they follow the target as it rises to the
  budget, over the shared warm-up's steps (the same length as EP's and HAP's).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import torch
from torch import Tensor

from hap.engine.graph import Graph
from hap.errors import ConfigError
from hap.io.circuit import Circuit
from hap.search import ranking
from hap.search.hybrid import attribute, candidate_edges, check_scorer, masked_circuit
from hap.search.masks import SearchConfig, keep_probability
from hap.search.selection import edges_for_sparsity
from hap.tasks.base import Task

BISECTIONS = 200  # halvings of the centre's bracket (stops early once it no longer shrinks)


@dataclass(frozen=True)
class WarmConfig:
    """ep-warm's settings (module docstring). kept_multiple: the initial masks keep this many
    times the edge budget in expectation. spread: the map's width w in edge budgets; log-alpha
    falls from high to floor over a few w ranks around the centre, by (high - floor) / 4w per
    rank at the centre. floor: the log-alpha the worst-ranked edges start near (keep probability
    1.2% at -6): low enough that the tail keeps few edges in expectation, high enough that its
    edges are still sampled open now and then and so get gradient. high: `search.init_log_alpha`,
    where EP starts every edge. attribution_metric / ig_steps / ig_points / ensemble: the stage-1
    scorer as in HAP (EAP by default; EAP-IG with ig_steps > 0; ensemble=true, with ig_steps
    >= 1: the mean of the two ranks). search: the shared search (warm-up, stopping rule,
    selection, ablation).

    Defaults (kept_multiple 2, spread 1, floor -6, EAP) from fixed-step runs on IOI at 94% on the
    default model, seeds 11-13 (not the reference seeds 0-5), mean test KL after 25/50/100 steps:
    ep-warm 0.87/0.59/0.53 and hap-warm 0.84/0.77/0.73 against EP 1.52/0.89/0.79 and HAP
    1.21/0.73/0.77. Spread 0.25 did as well for ep-warm (0.93/0.57/0.62) but not for hap-warm
    (1.20/0.81/0.75); spread 2 worse for both (its wide tail holds much of the expected count);
    kept_multiple 3 no better at 50-100 steps (ep-warm 0.73/0.62/0.64); on seed 11 alone,
    kept_multiple 1.5 and floor -4 were far worse. The ensemble scorer was no better at 50-100
    steps (ep-warm 0.75/0.69/0.66, hap-warm 0.80/0.76/0.70)."""

    kept_multiple: float = 2.0
    spread: float = 1.0
    floor: float = -6.0
    attribution_metric: str = "logit_diff"
    ig_steps: int = 0
    ig_points: str = "left"
    ensemble: bool = False
    search: SearchConfig = field(default_factory=SearchConfig)

    def rules(self) -> dict[str, tuple[bool, str]]:
        return {
            "kept_multiple": (self.kept_multiple > 0, "must be > 0, in edge budgets"),
            "spread": (self.spread > 0, "must be > 0, in edge budgets"),
            "floor": (
                self.floor < self.search.init_log_alpha,
                f"must be < init_log_alpha ({self.search.init_log_alpha:g}), where the best "
                "edges start",
            ),
        }

    def validate(self) -> None:
        check_scorer(self, self.rules())
        self.search.validate()


@dataclass(frozen=True)
class HAPWarmConfig(WarmConfig):
    """hap-warm's settings: ep-warm's, within HAP's candidates (candidate_multiple times the
    budget by |score|, as HAPConfig's). kept_multiple must be below candidate_multiple: the
    candidates alone hold the initial expected kept edges."""

    candidate_multiple: float = 4.0

    def rules(self) -> dict[str, tuple[bool, str]]:
        return {
            **super().rules(),
            "candidate_multiple": (
                self.candidate_multiple > self.kept_multiple and self.candidate_multiple >= 1,
                f"must be >= 1 and > kept_multiple ({self.kept_multiple:g}), candidates = this "
                "many times the edge budget",
            ),
        }


def warm_map(rank: Tensor, centre: float, width: float, high: float, floor: float) -> Tensor:
    """[n] float64 log-alpha = floor + (high - floor) * sigmoid((centre - rank) / width)."""
    return floor + (high - floor) * torch.sigmoid((centre - rank.double()) / width)


def initial_log_alpha(
    rank: Tensor, n_keep: int, kept_multiple: float, spread: float, high: float, floor: float
) -> Tensor:
    """[n] float32 initial log-alpha of edges of rank `rank` ([n], 0 = best): `warm_map` with
    width spread * n_keep and the centre solved (by bisection: the expected count rises with it)
    so that sum keep_probability = kept_multiple * n_keep. Raises ConfigError where no centre
    gives that count: with every edge at `floor` the n edges already keep more, or at `high`
    they keep fewer."""
    rank = rank.double().cpu()
    n = rank.numel()
    want = kept_multiple * n_keep
    width = spread * n_keep

    def kept(centre: float) -> float:
        return float(keep_probability(warm_map(rank, centre, width, high, floor)).sum())

    low_end, high_end = float(rank.min()) - 40 * width, float(rank.max()) + 40 * width
    least, most = kept(low_end), kept(high_end)
    if not least < want < most:
        fix = (
            "lower floor (e.g. --set floor=-8) or raise kept_multiple"
            if want <= least
            else "lower kept_multiple"
        )
        raise ConfigError(
            f"warm start: kept_multiple {kept_multiple:g} x budget {n_keep} = {want:g} expected "
            f"edges is out of reach of {n} edges with log-alpha between floor {floor:g} "
            f"({least:.1f} kept) and {high:g} ({most:.1f} kept): {fix}"
        )
    for _ in range(BISECTIONS):
        middle = 0.5 * (low_end + high_end)
        if middle in (low_end, high_end):
            break
        low_end, high_end = (middle, high_end) if kept(middle) < want else (low_end, middle)
    return warm_map(rank, 0.5 * (low_end + high_end), width, high, floor).float()


def config_log_alpha(rank: Tensor, n_keep: int, config: WarmConfig) -> Tensor:
    """`initial_log_alpha` with `config`'s knobs (high: its search's init_log_alpha)."""
    return initial_log_alpha(
        rank,
        n_keep,
        config.kept_multiple,
        config.spread,
        config.search.init_log_alpha,
        config.floor,
    )


def discover_ep(
    model, graph: Graph, task: Task, target_sparsity: float, seed: int, config: WarmConfig
) -> Circuit:
    """ep-warm: Edge Pruning over every edge from `config_log_alpha` of the stage-1 ranks."""
    n_keep = edges_for_sparsity(graph, target_sparsity)
    start = time.perf_counter()
    rank = ranking.ranks(attribute(model, graph, task.train, config))
    init = config_log_alpha(rank, n_keep, config)
    return masked_circuit(
        "ep-warm", model, graph, task, target_sparsity, seed, config, start, None, init
    )


def discover_hap(
    model, graph: Graph, task: Task, target_sparsity: float, seed: int, config: HAPWarmConfig
) -> Circuit:
    """hap-warm: HAP's candidates, searched from `config_log_alpha` of their stage-1 ranks."""
    n_keep = edges_for_sparsity(graph, target_sparsity)
    start = time.perf_counter()
    scores = attribute(model, graph, task.train, config)
    candidates = candidate_edges(scores, n_keep, config.candidate_multiple)
    init = config_log_alpha(ranking.ranks(scores)[candidates], n_keep, config)
    return masked_circuit(
        "hap-warm",
        model,
        graph,
        task,
        target_sparsity,
        seed,
        config,
        start,
        candidates,
        init,
        details={"n_candidates": int(candidates.numel())},
    )
