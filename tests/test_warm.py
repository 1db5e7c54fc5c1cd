"""Warm-started searches (ep-warm, hap-warm) and the mean-rank ensemble, on the real model."""

import pytest
import torch

from hap.engine.evaluate import evaluate_circuit
from hap.errors import ConfigError
from hap.experiments.registry import get_backend, resolve_settings
from hap.search import ranking
from hap.search.hybrid import HAPConfig, attribute, candidate_edges
from hap.search.masks import (
    SearchConfig,
    binarize,
    expected_sparsity,
    keep_probability,
    learn_masks,
)
from hap.search.selection import edges_for_sparsity, select, top_edges
from hap.search.warm import HAPWarmConfig, WarmConfig, config_log_alpha, initial_log_alpha


def test_ranks_average_ties_and_the_ensemble_is_the_mean_rank():
    eap = torch.tensor([0.5, -3.0, 1.0, -1.0, 0.0])  # |.|: 3 > 1 = 1 > 0.5 > 0
    ig = torch.tensor([4.0, 0.1, -2.0, 3.0, 1.0])
    assert ranking.ranks(eap).tolist() == [3.0, 0.0, 1.5, 1.5, 4.0]
    assert ranking.ranks(ig).tolist() == [0.0, 4.0, 2.0, 1.0, 3.0]
    mean = ranking.mean_rank(eap, ig)
    assert mean.tolist() == [1.5, 2.0, 1.75, 1.25, 3.5]
    # the |score| rankers (selection, HAP's candidates) read the priority in mean-rank order
    assert top_edges(ranking.priority(mean), 2).nonzero().squeeze(1).tolist() == [0, 3]
    assert ranking.ranks(ranking.priority(mean)).tolist() == [1.0, 3.0, 2.0, 0.0, 4.0]


@pytest.mark.parametrize("multiple, spread", [(2.0, 0.25), (3.0, 1.0), (1.5, 0.5)])
def test_the_map_is_monotone_bounded_and_keeps_the_stated_multiple(multiple, spread):
    rank = ranking.ranks(torch.randn(1519, generator=torch.Generator().manual_seed(0)))
    la = initial_log_alpha(rank, 91, multiple, spread, high=3.0, floor=-6.0)
    assert float(keep_probability(la.double()).sum()) == pytest.approx(multiple * 91, abs=0.01)
    by_rank = la[torch.argsort(rank)]
    assert (by_rank[1:] <= by_rank[:-1]).all() and (-6.0 <= la).all() and (la <= 3.0).all()
    head = by_rank[by_rank > -5.99]  # strictly decreasing until float32 merges the tail
    assert (head[1:] < head[:-1]).all() and len(head) > multiple * 91
    assert by_rank[0] > (3.0 - 6.0) / 2 and by_rank[-1] < -5.99  # the map's two ends


def test_an_unreachable_expected_count_names_the_fix():
    rank = torch.arange(1519.0)
    with pytest.raises(ConfigError, match="lower floor"):  # the tail alone keeps ~126 edges
        initial_log_alpha(rank, 30, 2.0, 0.25, high=3.0, floor=-4.0)
    with pytest.raises(ConfigError, match="lower kept_multiple"):
        initial_log_alpha(rank[:100], 30, 4.0, 0.25, high=3.0, floor=-6.0)
    with pytest.raises(ConfigError, match="kept_multiple"):
        get_backend("hap-warm").config({"kept_multiple": "4"})  # = candidate_multiple
    for method in ("hap", "ep-warm", "hap-warm"):
        with pytest.raises(ConfigError, match="ig_steps >= 1"):
            get_backend(method).config({"ensemble": "true"})


def test_warm_settings_are_typed_and_reach_only_the_methods_that_have_them():
    configs = resolve_settings(["ep", "ep-warm", "hap-warm"], {"steps": "30", "floor": "-7"})
    assert configs["ep"].steps == configs["ep-warm"].search.steps == 30
    assert configs["ep-warm"].floor == configs["hap-warm"].floor == -7.0
    assert HAPConfig().ensemble is False and WarmConfig().ig_steps == 0  # EAP by default


def test_the_warmup_starts_at_the_inits_expected_sparsity(model, graph, ioi):
    config = SearchConfig(steps=1, init_std=0.0)
    n_keep = edges_for_sparsity(graph, 0.94)
    rank = ranking.ranks(torch.randn(graph.n_edges, generator=torch.Generator().manual_seed(1)))
    init = initial_log_alpha(rank, n_keep, 2.0, 0.25, 3.0, -6.0)
    warm = learn_masks(model, graph, ioi, 0.94, config, 0, init_log_alpha=init)
    start = float(expected_sparsity(init, graph.n_edges))
    assert warm.start == pytest.approx(start, abs=1e-6)
    assert start == pytest.approx(1 - 2 * n_keep / graph.n_edges, abs=1e-5)
    assert warm.lambdas == (0.0, 0.0)  # no sparsity gap at the first step, so no push
    cold = learn_masks(model, graph, ioi, 0.94, config, 0)  # EP: from sparsity 0
    assert cold.start == 0.0 and cold.lambdas[0] > 0.1  # its masks start above 0
    with pytest.raises(ValueError, match="one value per active edge"):
        learn_masks(model, graph, ioi, 0.94, config, 0, init_log_alpha=init[:10])


def test_before_any_step_ep_warm_holds_eaps_circuit(model, graph, ioi):
    config = WarmConfig()
    n_keep = edges_for_sparsity(graph, 0.94)
    init = config_log_alpha(
        ranking.ranks(attribute(model, graph, ioi.train, config)), n_keep, config
    )
    unlearned = binarize(graph, init, None, n_keep, config.search).mask
    assert torch.equal(unlearned, get_backend("eap")(model, graph, ioi, 0.94).mask)


def test_a_short_ep_warm_run_reaches_the_budget_and_records_its_knobs(model, graph, ioi):
    circuit = get_backend("ep-warm")(model, graph, ioi, 0.94, seed=1, steps=30, kept_multiple=2.5)
    n_keep = edges_for_sparsity(graph, 0.94)
    assert circuit.method == "ep-warm" and circuit.steps == 30 and circuit.n_edges == n_keep
    assert circuit.config["kept_multiple"] == 2.5 and circuit.config["search"]["steps"] == 30
    assert {"spread", "floor", "ig_steps", "ensemble"} <= set(circuit.config)
    start = circuit.details["warmup_start"]
    assert start == pytest.approx(1 - 2.5 * n_keep / graph.n_edges, abs=1e-3)
    reached = float(expected_sparsity(circuit.scores, graph.n_edges))
    assert abs(reached - 0.94) <= SearchConfig().sparsity_tol * (1 - 0.94)  # the rule's 'near'
    empty = torch.zeros(graph.n_edges, dtype=torch.bool)
    kl = evaluate_circuit(model, graph, ioi.test, circuit.mask).kl
    assert kl < 0.5 * evaluate_circuit(model, graph, ioi.test, empty).kl


def test_hap_warm_and_the_ensemble_search_inside_the_ensembles_candidates(model, graph, ioi):
    settings = {"steps": 3, "ensemble": True, "ig_steps": 2}
    config = get_backend("hap-warm").config(settings)
    n_keep = edges_for_sparsity(graph, 0.94)
    eap = attribute(model, graph, ioi.train, WarmConfig())
    mean = ranking.mean_rank(eap, attribute(model, graph, ioi.train, WarmConfig(ig_steps=2)))
    candidates = torch.zeros(graph.n_edges, dtype=torch.bool)
    candidates[candidate_edges(ranking.priority(mean), n_keep, 4.0)] = True
    assert not torch.equal(candidates, top_edges(eap, 4 * n_keep))  # the ensemble moves some
    for method in ("hap", "hap-warm"):
        circuit = get_backend(method)(model, graph, ioi, 0.94, seed=1, **settings)
        assert torch.equal(torch.isfinite(circuit.scores), candidates)
        assert not (circuit.mask & ~candidates).any() and circuit.config["ensemble"]
    assert isinstance(config, HAPWarmConfig) and circuit.details["n_candidates"] == 4 * n_keep
    # hap-warm's unlearned masks, by the map within the candidates, rank as the ensemble does
    picked = candidates.nonzero().squeeze(1)
    init = config_log_alpha(ranking.ranks(ranking.priority(mean))[picked], n_keep, config)
    expected = select(graph, ranking.priority(mean), n_keep, "corrupted", "refill", picked)
    assert torch.equal(binarize(graph, init, picked, n_keep, config.search).mask, expected.mask)
