"""From a ranking of edges to a circuit of a given size: the one selection step every backend
shares.

Every method ranks edges (attribution methods by |score|, mask learners by log-alpha); this module
turns a ranking and an edge budget n into a circuit. A circuit's size is counted in *live* edges
(`hap.engine.live`): edges on a path from the input to the logits under the run's ablation. Three
rules:

- `refill` (the default for every method): walk down the ranking, keeping each edge unless it
  would push the live count past n, until n edges are live. The circuit is the ranking's own
  first n live edges: the method's scores alone decide it, and every method is compared at the
  same number of edges that can change the output.
- `topn`: the top n edges of the ranking, dangling edges then dropped (MIB's protocol): fewer
  than n live edges where the ranking's top holds dangling ones; scoring methods lose most there.
- `greedy`: EAP-IG's `apply_greedy`: grow the circuit from the logits, each time adding the
  best-ranked edge into a node already in the circuit, until n edges are live. It imposes a
  connectivity prior on the ranking, so it is a different selection, not a fairer one.

Where no circuit of n live edges exists among the ranked edges (HAP's candidates too few, a
ranking that cannot connect), the circuit holds as many as it can and `Selection.shortfall`
says how many are missing.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from hap.engine.graph import Graph
from hap.engine.live import count_live, live_edges
from hap.errors import ConfigError, UserError

SELECTIONS = ("refill", "topn", "greedy")


def check_selection(rule: str) -> None:
    if rule not in SELECTIONS:
        raise ConfigError(f"selection={rule!r}: choose one of {', '.join(SELECTIONS)}")


def edges_for_sparsity(graph: Graph, target_sparsity: float) -> int:
    """The edge budget of a circuit at `target_sparsity` (rounded to the nearest edge, at least 1)."""
    if not 0.0 <= target_sparsity < 1.0:
        raise UserError(f"sparsity must be in [0, 1), got {target_sparsity}; e.g. --sparsity 0.94")
    return max(1, round((1.0 - target_sparsity) * graph.n_edges))


def top_edges(scores: Tensor, n: int) -> Tensor:
    """[n_edges] bool: the n edges of largest |score| (ties broken by index, deterministically)."""
    order = torch.argsort(scores.abs(), descending=True, stable=True)
    mask = torch.zeros(scores.numel(), dtype=torch.bool)
    mask[order[:n]] = True
    return mask


@dataclass(frozen=True)
class Selection:
    """mask: [n_edges] bool, the live edges selected. budget: the n asked for. ranked: edges
    taken from the ranking before dangling ones were dropped. live: edges in `mask`.
    shortfall: budget - live where no circuit of `budget` live edges was found (else 0)."""

    mask: Tensor
    rule: str
    budget: int
    ranked: int
    live: int

    @property
    def shortfall(self) -> int:
        return max(0, self.budget - self.live)

    def record(self) -> dict:
        return {
            "selection": self.rule,
            "budget": self.budget,
            "ranked_edges": self.ranked,
            "live_edges": self.live,
            "shortfall": self.shortfall,
        }


def ranking(priority: Tensor, eligible: Tensor | None = None) -> Tensor:
    """Edge indices, best first (higher `priority` is better; ties by index). `eligible`: the
    indices that may be chosen (default: every edge)."""
    priority = priority.detach().cpu()
    if eligible is None:
        return torch.argsort(priority, descending=True, stable=True)
    eligible = eligible.cpu()
    return eligible[torch.argsort(priority[eligible], descending=True, stable=True)]


def select(
    graph: Graph,
    priority: Tensor,
    budget: int,
    ablation: str = "corrupted",
    rule: str = "refill",
    eligible: Tensor | None = None,
) -> Selection:
    """The circuit of `budget` live edges that `rule` picks from the ranking by `priority`
    ([n_edges], higher is better), among `eligible` edge indices (default all)."""
    check_selection(rule)
    order = ranking(priority, eligible)
    if rule == "topn":
        chosen = torch.zeros(graph.n_edges, dtype=torch.bool)
        chosen[order[:budget]] = True
    elif rule == "refill":
        chosen = _refill(graph, order, budget, ablation)
    else:
        chosen = _greedy(graph, order, budget, ablation)
    mask = live_edges(graph, chosen, ablation)
    return Selection(mask, rule, budget, int(chosen.sum()), int(mask.sum()))


def _refill(graph: Graph, order: Tensor, budget: int, ablation: str) -> Tensor:
    """The ranking's prefix, skipping any edge that would push the live count past `budget`.

    Live counts only grow as edges are added, so the first prefix that reaches the budget is
    found by bisection (a few dozen liveness passes, not one per edge). Where that prefix's last
    edge connects several dangling edges at once and overshoots, it is skipped and the walk goes
    on below it."""
    chosen = torch.zeros(graph.n_edges, dtype=torch.bool)
    start = 0

    def live_with(end: int) -> int:
        trial = chosen.clone()
        trial[order[start:end]] = True
        return count_live(graph, trial, ablation)

    while start < len(order):
        if live_with(len(order)) < budget:  # the rest of the ranking cannot reach the budget
            chosen[order[start:]] = True
            break
        low, high = start + 1, len(order)  # the smallest end with live_with(end) >= budget
        while low < high:
            middle = (low + high) // 2
            if live_with(middle) >= budget:
                high = middle
            else:
                low = middle + 1
        chosen[order[start : low - 1]] = True
        if live_with(low) == budget:
            chosen[order[low - 1]] = True
            break
        start = low  # order[low - 1] overshoots: skip it
    return chosen


def _greedy(graph: Graph, order: Tensor, budget: int, ablation: str) -> Tensor:
    """EAP-IG's greedy growth from the logits, continued until `budget` edges are live (under
    corrupted ablation, edges from nodes the input does not yet reach are not live), skipping an
    edge that would overshoot."""
    rank = torch.full((graph.n_edges,), len(order), dtype=torch.long)
    rank[order] = torch.arange(len(order))
    ranked = rank < len(order)
    node_of_receiver = graph.receiver_node[graph.edge_receiver]  # -1: the logits
    sender = graph.edge_sender
    in_graph = torch.zeros(graph.n_senders + 1, dtype=torch.bool)
    in_graph[-1] = True  # index -1: the logits
    chosen = torch.zeros(graph.n_edges, dtype=torch.bool)
    skipped = torch.zeros(graph.n_edges, dtype=torch.bool)
    live = 0
    while live < budget:
        open_ = ranked & ~chosen & ~skipped & in_graph[node_of_receiver]
        if not open_.any():
            break
        edge = int(torch.where(open_, rank, len(order)).argmin())
        chosen[edge] = True
        now = count_live(graph, chosen, ablation)
        if now > budget:
            chosen[edge], skipped[edge] = False, True
            continue
        live = now
        in_graph[sender[edge]] = True
    return chosen
