"""One selection for every backend: a ranking and a budget n become a circuit of n live edges
(refill and greedy), or MIB's top-n-then-prune (topn); checked against a one-edge-at-a-time walk
and on the real model's backends."""

from __future__ import annotations

import pytest
import torch

from hap.engine.graph import Graph
from hap.engine.live import count_live, live_edges
from hap.experiments.registry import get_backend
from hap.search.selection import edges_for_sparsity, select


def _walk(graph: Graph, order: torch.Tensor, budget: int, ablation: str) -> torch.Tensor:
    """The refill rule by its definition: down the ranking one edge at a time, skipping an edge
    that would push the live count past the budget."""
    chosen = torch.zeros(graph.n_edges, dtype=torch.bool)
    for edge in order.tolist():
        chosen[edge] = True
        live = count_live(graph, chosen, ablation)
        if live > budget:
            chosen[edge] = False
        elif live == budget:
            break
    return live_edges(graph, chosen, ablation)


@pytest.mark.parametrize("ablation", ["corrupted", "mean"])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_refill_equals_the_one_edge_at_a_time_walk(graph, ablation, seed):
    priority = torch.rand(graph.n_edges, generator=torch.Generator().manual_seed(seed))
    order = torch.argsort(priority, descending=True, stable=True)
    for budget in (5, 30, 91):
        picked = select(graph, priority, budget, ablation, "refill")
        assert picked.live == budget and picked.shortfall == 0
        assert torch.equal(picked.mask, _walk(graph, order, budget, ablation))
        assert torch.equal(live_edges(graph, picked.mask, ablation), picked.mask)


def test_topn_keeps_fewer_live_edges_where_the_top_dangles(graph):
    """A ranking whose top edges are all into layer 0's heads from the input: none reaches the
    logits, so MIB's top-n keeps none of them live, and refill reaches down the ranking."""
    names = graph.edge_index
    priority = torch.zeros(graph.n_edges)
    dangling = [names[f"input->a0.h{h}<q>"] for h in range(4)]
    priority[dangling] = 10.0
    priority[names["input->logits"]] = 5.0
    priority[names["a0.h0->logits"]] = 4.0
    topn = select(graph, priority, 4, "corrupted", "topn")
    assert topn.ranked == 4 and topn.live == 0 and topn.shortfall == 4
    # Refill: input->logits is live (1); a0.h0->logits would make itself and input->a0.h0<q>
    # live at once (3 > 2), so it is skipped and the walk goes on below it.
    refill = select(graph, priority, 2, "corrupted", "refill")
    kept = {graph.edge_names()[i] for i in refill.mask.nonzero().squeeze(1).tolist()}
    assert "input->logits" in kept and "a0.h0->logits" not in kept
    order = torch.argsort(priority, descending=True, stable=True)
    assert torch.equal(refill.mask, _walk(graph, order, 2, "corrupted"))


def test_greedy_grows_from_the_logits_to_the_budget(graph):
    priority = torch.rand(graph.n_edges, generator=torch.Generator().manual_seed(4))
    picked = select(graph, priority, 40, "corrupted", "greedy")
    assert picked.live == 40
    assert torch.equal(live_edges(graph, picked.mask, "corrupted"), picked.mask)


def test_a_budget_the_eligible_edges_cannot_reach_is_a_recorded_shortfall(graph):
    eligible = torch.arange(10)  # edges out of the input only: at most the one into the logits
    priority = torch.rand(graph.n_edges)
    picked = select(graph, priority, 20, "corrupted", "refill", eligible)
    assert picked.live < 20 and picked.shortfall == 20 - picked.live
    assert picked.record()["shortfall"] == picked.shortfall


@pytest.mark.parametrize("method", ["eap", "eap-ig", "ep", "hap"])
def test_every_backend_reaches_the_budget_in_live_edges(model, graph, ioi, method):
    settings = {"steps": 20} if get_backend(method).learns_masks else {}
    if method == "eap-ig":
        settings["ig_steps"] = 2
    circuit = get_backend(method)(model, graph, ioi, 0.98, seed=0, **settings)
    budget = edges_for_sparsity(graph, 0.98)
    assert circuit.details["budget"] == budget == 30
    assert circuit.n_edges == circuit.details["live_edges"] == budget
    assert count_live(graph, circuit.mask, "corrupted") == budget
    assert circuit.details["selection"] == "refill"
