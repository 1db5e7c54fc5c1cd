"""One ablation for the search and the evaluation alike: EAP's scores, the searches, dangling-edge
pruning and the command line under corrupted, mean and zero ablation."""

from __future__ import annotations

import json

import pytest
import torch

from hap.cli import main
from hap.engine.evaluate import evaluate_circuit
from hap.engine.live import live_edges
from hap.experiments.registry import get_backend
from hap.search.attribution import attribution_scores


def _mask(graph, names):
    mask = torch.zeros(graph.n_edges, dtype=torch.bool)
    for name in names:
        mask[graph.edge_index[name]] = True
    return mask


@pytest.mark.parametrize("ablation", ["mean", "zero"])
def test_the_ablation_changes_eaps_scores(model, graph, ioi, ablation):
    """(That the scores are minus the mask gradient under every ablation is tested in
    tests/test_engine.py.)"""
    batch = ioi.train.subset(slice(0, 12))
    scores = attribution_scores(model, graph, batch, ablation=ablation)
    corrupted = attribution_scores(model, graph, batch)
    assert (scores - corrupted).abs().max() > 1e-2


def test_a_node_without_inputs_is_dangling_only_under_corrupted_ablation(model, graph, ioi):
    """a1.h2 -> logits with no kept edge into a1.h2: under corrupted ablation a1.h2 sees only
    the corrupted run, so the edge adds zero and pruning drops it; under mean or zero ablation
    a1.h2 outputs f(baseline), which is not the baseline, so the edge matters and is kept."""
    data = ioi.test.subset(slice(0, 24))
    path = ["input->a0.h1<v>", "a0.h1->logits"]
    with_edge, without = _mask(graph, path + ["a1.h2->logits"]), _mask(graph, path)
    assert torch.equal(live_edges(graph, with_edge, "corrupted"), without)
    a = evaluate_circuit(model, graph, data, with_edge, ablation="corrupted")
    b = evaluate_circuit(model, graph, data, without, ablation="corrupted")
    assert abs(a.logit_diff - b.logit_diff) < 1e-5 and abs(a.kl - b.kl) < 1e-5
    for ablation in ("mean", "zero"):
        assert torch.equal(live_edges(graph, with_edge, ablation), with_edge)
        a = evaluate_circuit(model, graph, data, with_edge, ablation=ablation)
        b = evaluate_circuit(model, graph, data, without, ablation=ablation)
        assert abs(a.kl - b.kl) > 1e-3, ablation
    # an edge into a node that reaches the logits through no kept edge is dead under any ablation
    dead = _mask(graph, path + ["input->a2.h0<q>"])
    for ablation in ("corrupted", "mean", "zero"):
        assert torch.equal(live_edges(graph, dead, ablation), without)


@pytest.mark.parametrize("method", ["eap", "ep", "hap"])
def test_backends_search_under_the_ablation(model, graph, ioi, method):
    backend = get_backend(method)
    settings = {"ablation": "mean"} | ({"steps": "6"} if backend.learns_masks else {})
    mean = backend(model, graph, ioi, 0.95, seed=0, config=backend.config(settings))
    plain = backend(
        model,
        graph,
        ioi,
        0.95,
        seed=0,
        config=backend.config({**settings, "ablation": "corrupted"}),
    )
    recorded = mean.config.get("ablation") or mean.config["search"]["ablation"]
    assert recorded == "mean"
    assert not torch.equal(mean.scores, plain.scores)


def test_cli_ablation_reaches_search_and_evaluation(capsys):
    args = ["discover", "--method", "eap", "--n-test", "16", "--device", "cpu", "--json"]
    assert main(args + ["--ablation", "zero"]) == 0
    zero = json.loads(capsys.readouterr().out)
    assert zero["ablation"] == "zero" and zero["config"]["ablation"] == "zero"
    assert main(args) == 0
    corrupted = json.loads(capsys.readouterr().out)
    assert corrupted["config"]["ablation"] == "corrupted"
    assert zero["full_logit_diff"] == pytest.approx(corrupted["full_logit_diff"])
    assert zero["kl"] != pytest.approx(corrupted["kl"])
    assert main(args + ["--ablation", "zero", "--set", "ablation=mean"]) == 2
    assert "disagree" in capsys.readouterr().err
