"""Every backend on the real default model: exact sparsity, faithfulness ordering, determinism."""

import pytest
import torch

from hap.engine.evaluate import evaluate_circuit
from hap.engine.live import live_edges
from hap.experiments.registry import BACKENDS, get_backend
from hap.io.circuit import Circuit
from hap.io.formats import read_circuit, write_circuit
from hap.search.selection import edges_for_sparsity, top_edges


@pytest.fixture(scope="module")
def empty_kl(model, graph, ioi) -> float:
    return evaluate_circuit(model, graph, ioi.test, torch.zeros(graph.n_edges, dtype=torch.bool)).kl


def test_ep_hits_the_requested_sparsity_and_beats_the_empty_circuit(
    model, graph, ioi, speedup, empty_kl
):
    circuit = speedup.circuit("ep")
    assert circuit.n_edges == edges_for_sparsity(graph, 0.94) == 91
    assert circuit.sparsity == pytest.approx(1 - 91 / graph.n_edges)
    assert evaluate_circuit(model, graph, ioi.test, circuit.mask).kl < 0.2 * empty_kl
    assert circuit.timings["pruning"] > 0
    assert circuit.steps == 200 and circuit.details["stopped"] == "fixed"
    assert circuit.config["steps"] == 200  # the resolved config travels with the circuit


def test_hap_keeps_the_same_budget_from_a_quarter_of_the_graph(graph, speedup):
    hap, ep = speedup.circuit("hap"), speedup.circuit("ep")
    assert hap.n_edges == ep.n_edges
    assert hap.details["n_candidates"] == 4 * 91
    assert hap.steps == ep.steps == hap.config["search"]["steps"] == 200
    assert set(hap.timings) >= {"attribution", "pruning", "total"}
    # one warm-up length from different starts: HAP's candidates' sparsity (76%), EP's 0
    assert hap.details["warmup_start"] == pytest.approx(1 - 364 / graph.n_edges)
    assert ep.details["warmup_start"] == 0.0
    assert hap.details["warmup"] == ep.details["warmup"] == min(round(80 * 0.94), 200 // 2)


def test_eap_is_less_faithful_than_hap_at_98(model, graph, ioi):
    eap = get_backend("eap")(model, graph, ioi, 0.98)
    hap = get_backend("hap")(model, graph, ioi, 0.98, seed=0)
    eap_kl = evaluate_circuit(model, graph, ioi.test, eap.mask).kl
    hap_kl = evaluate_circuit(model, graph, ioi.test, hap.mask).kl
    assert eap_kl > hap_kl


@pytest.mark.parametrize("method", ["eap", "eap-ig", "ep", "hap"])
def test_same_seed_same_circuit(model, graph, ioi, method):
    quick = {} if method.startswith("eap") else {"steps": 15, "warmup": 10}
    a = get_backend(method)(model, graph, ioi, 0.9, seed=1, **quick)
    b = get_backend(method)(model, graph, ioi, 0.9, seed=1, **quick)
    assert torch.equal(a.mask, b.mask)
    assert a.n_edges > 0


def test_eap_ig_differs_from_eap_and_drops_dangling_edges(model, graph, ioi):
    eap = get_backend("eap")(model, graph, ioi, 0.95)
    ig = get_backend("eap-ig")(model, graph, ioi, 0.95)
    assert not torch.equal(eap.scores, ig.scores)
    assert ig.config["ig_steps"] == 5
    for circuit in (eap, ig):
        assert circuit.n_edges <= edges_for_sparsity(graph, 0.95)
        assert torch.equal(live_edges(graph, circuit.mask), circuit.mask)


def test_live_edges_by_hand(graph):
    names = graph.edge_names()
    keep = ["input->a0.h1<v>", "a0.h1->logits", "a1.h2->logits", "input->m3"]
    mask = torch.zeros(graph.n_edges, dtype=torch.bool)
    mask[[names.index(n) for n in keep]] = True
    cleaned = {names[i] for i in live_edges(graph, mask).nonzero().squeeze(1).tolist()}
    # a1.h2 has no input edge; m3 has no path to the logits.
    assert cleaned == {"input->a0.h1<v>", "a0.h1->logits"}


def test_acdc_removes_edges_greedily(model, graph, ioi):
    circuit = get_backend("acdc")(model, graph, ioi, 0.94, threshold=0.05, n_examples=8)
    assert 0.5 < circuit.sparsity < 1.0
    assert circuit.details["final_kl_train"] < 1.0
    assert circuit.config["threshold"] == 0.05


def test_circuit_json_round_trip(tmp_path, graph):
    mask = top_edges(torch.arange(graph.n_edges, dtype=torch.float), 50)
    circuit = Circuit("eap", mask, 0.97, graph.sparsity(mask))
    write_circuit(circuit, graph, tmp_path / "c.json")
    loaded, _ = read_circuit(tmp_path / "c.json", graph)
    assert torch.equal(loaded.mask, mask)
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(ValueError, match="not valid JSON"):
        read_circuit(tmp_path / "bad.json", graph)


def test_registry_and_bad_input(model, graph, ioi):
    assert set(BACKENDS) == {"eap", "eap-ig", "ep", "hap", "acdc", "ep-warm", "hap-warm"}
    with pytest.raises(ValueError, match="choose one of"):
        get_backend("eapp")
    with pytest.raises(ValueError, match="sparsity must be in"):
        get_backend("eap")(model, graph, ioi, 1.5)
