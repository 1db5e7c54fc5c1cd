"""Circuit files: this project's JSON and EAP-IG's / MIB's JSON and .pt, both ways, and files
written by another tool evaluated here."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from hap.cli import main
from hap.engine.evaluate import evaluate_circuit
from hap.engine.graph import Graph
from hap.io.circuit import Circuit
from hap.io.formats import (
    CircuitFileError,
    detect_format,
    node_in_graph,
    read_circuit,
    to_eapig,
    write_circuit,
)
from hap.search.selection import top_edges


def _circuit(graph: Graph, n: int, seed: int = 0, scores: str = "random") -> Circuit:
    generator = torch.Generator().manual_seed(seed)
    values = torch.randn(graph.n_edges, generator=generator)
    mask = top_edges(values, n)
    if scores == "hap":  # log-alpha inside the candidates, -inf outside
        values = torch.where(top_edges(values, 3 * n), values, torch.tensor(-math.inf))
    return Circuit(
        "hap" if scores == "hap" else "eap",
        mask,
        0.95,
        graph.sparsity(mask),
        seed=seed,
        scores=None if scores == "none" else values,
        config={"ig_steps": 0, "nested": {"steps": 3}},
        steps=7,
        details={"stopped": "rule"},
        timings={"total": 1.5},
    )


@pytest.mark.parametrize("scores", ["random", "hap", "none"])
@pytest.mark.parametrize("fmt", ["eap-ig", "eap-ig-pt"])
def test_round_trip_through_eapig_gives_the_same_circuit(tmp_path, graph, fmt, scores):
    ours = _circuit(graph, 91, scores=scores)
    write_circuit(ours, graph, tmp_path / "ours.json")
    native, _ = read_circuit(tmp_path / "ours.json", graph)
    write_circuit(native, graph, tmp_path / "theirs", fmt)
    back, file_graph = read_circuit(tmp_path / "theirs", graph)
    assert detect_format(tmp_path / "theirs") == fmt
    assert torch.equal(back.mask, ours.mask)
    if scores == "none":
        assert back.scores is None
    else:
        assert torch.equal(back.scores, ours.scores)  # -inf included
    for field in ("method", "target_sparsity", "seed", "config", "steps", "details", "timings"):
        assert getattr(back, field) == getattr(ours, field)
    assert file_graph == graph and file_graph.d_model == 128


def test_gpt2_small_shape_from_a_config_alone(tmp_path):
    graph = Graph(12, 12, 768)  # no weights: the graph is the config's
    assert graph.n_edges == 32491
    ours = _circuit(graph, 1949, seed=3)
    write_circuit(ours, graph, tmp_path / "g.json", "eap-ig")
    data = json.loads((tmp_path / "g.json").read_text())
    assert data["cfg"] == {
        "n_layers": 12,
        "n_heads": 12,
        "parallel_attn_mlp": False,
        "d_model": 768,
    }
    assert len(data["edges"]) == 32491 and len(data["nodes"]) == 1 + 12 * 13 + 1
    for name in ("input->a0.h0<q>", "a0.h5->m0", "m0->a1.h2<k>", "a11.h11->logits", "m11->logits"):
        assert name in data["edges"]
    assert sum(e["in_graph"] for e in data["edges"].values()) == 1949
    for fmt in ("eap-ig", "native", "eap-ig-pt"):
        write_circuit(ours, graph, tmp_path / f"c.{fmt}", fmt)
        back, _ = read_circuit(tmp_path / f"c.{fmt}", graph)
        assert torch.equal(back.mask, ours.mask) and torch.equal(back.scores, ours.scores)


def test_pt_layout_is_eapigs_index_formulas(graph):
    """EAP-IG's forward index of a node and backward index of a receiver, re-derived: the .pt
    tensors are our dense [sender, receiver] view without reordering."""
    heads = graph.n_heads
    forward = {"input": 0, "m1": 1 + 1 * (heads + 1) + heads, "a2.h3": 1 + 2 * (heads + 1) + 3}
    backward = {
        "a2.h3<k>": 2 * (3 * heads + 1) + heads + 3,
        "m1": 1 * (3 * heads + 1) + 3 * heads,
        "logits": graph.n_receivers - 1,
    }
    for name, index in forward.items():
        assert graph.sender_names[index] == name
    for name, index in backward.items():
        assert graph.receiver_names[index] == name


def test_node_flags_follow_eapig(graph):
    mask = torch.zeros(graph.n_edges, dtype=torch.bool)
    for name in ("input->a0.h1<q>", "a0.h1->logits", "a1.h2->logits"):
        mask[graph.edge_index[name]] = True
    flags = dict(zip(graph.sender_names, node_in_graph(graph, mask).tolist()))
    assert flags["input"] and flags["a0.h1"]
    assert not flags["a1.h2"]  # an out-edge but no in-edge
    assert sum(flags.values()) == 2
    exported = to_eapig(Circuit("eap", mask, 0.9, graph.sparsity(mask)), graph)
    assert exported["nodes"]["logits"]["in_graph"] is True
    assert exported["edges"]["a0.h1->logits"] == {"score": 1.0, "in_graph": True}


def test_a_file_from_another_tool_is_evaluated(tmp_path, capsys, model, graph, ioi):
    """An EAP-IG-style file made without hap (every edge, scores, no 'hap' key) evaluates to the
    same figures as the mask itself."""
    scores = torch.linspace(-1, 1, graph.n_edges)
    mask = top_edges(scores, 120)
    names = graph.edge_names()
    foreign = {
        "cfg": {"n_layers": 4, "n_heads": 8, "parallel_attn_mlp": False, "d_model": 128},
        "nodes": {"input": {"in_graph": True}},
        "edges": {
            name: {"score": float(s), "in_graph": bool(k)}
            for name, s, k in zip(names, scores.tolist(), mask.tolist())
        },
    }
    path = tmp_path / "foreign.json"
    path.write_text(json.dumps(foreign))
    assert (
        main(["evaluate", "--circuit", str(path), "--n-test", "24", "--device", "cpu", "--json"])
        == 0
    )
    result = json.loads(capsys.readouterr().out)
    from hap.tasks import make_task

    task = make_task("ioi", model.tokenizer, n_train=64, n_val=64, n_test=24, seed=0)
    expected = evaluate_circuit(model, graph, task.test, mask)
    assert result["format"] == "eap-ig" and result["method"] == "imported"
    assert result["n_edges"] == 120
    assert math.isclose(result["kl"], expected.kl, rel_tol=1e-6)
    assert math.isclose(result["logit_diff"], expected.logit_diff, rel_tol=1e-6)


def test_a_file_for_another_shape_is_refused_naming_both(tmp_path, capsys):
    other = Graph(12, 12, 768)
    write_circuit(_circuit(other, 100), other, tmp_path / "gpt2.json", "eap-ig")
    code = main(["evaluate", "--circuit", str(tmp_path / "gpt2.json"), "--device", "cpu"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and err[0].startswith("hap: error: ")
    assert "12 layers x 12 heads, d_model 768 (32,491 edges)" in err[0]
    assert "4 layers x 8 heads, d_model 128 (1,519 edges)" in err[0]


def test_broken_files_are_one_line_errors(tmp_path, graph):
    cases = {
        "bad.json": "{not json",
        "list.json": "[1, 2]",
        "other.json": json.dumps({"hello": 1}),
        "unknown.json": json.dumps(
            {"cfg": {"n_layers": 4, "n_heads": 8}, "nodes": {}, "edges": {"x->y": {}}}
        ),
        "noscore.json": json.dumps(
            {"cfg": {"n_layers": 4, "n_heads": 8}, "nodes": {}, "edges": {"input->m0": {}}}
        ),
        "parallel.json": json.dumps(
            {"cfg": {"n_layers": 4, "n_heads": 8, "parallel_attn_mlp": True}, "edges": {}}
        ),
    }
    for name, text in cases.items():
        (tmp_path / name).write_text(text)
    (tmp_path / "shape.pt").write_bytes(b"")
    torch.save(
        {
            "cfg": {"n_layers": 4, "n_heads": 8},
            "edges_scores": torch.zeros(2, 2),
            "edges_in_graph": torch.zeros(2, 2, dtype=torch.bool),
        },
        tmp_path / "shape.pt",
    )
    expected = {
        "bad.json": "not valid JSON",
        "list.json": "no circuit",
        "other.json": "no circuit",
        "unknown.json": "does not have",
        "noscore.json": "in_graph flag",
        "parallel.json": "parallel",
        "shape.pt": "needs (37, 101)",
    }
    for name, message in expected.items():
        with pytest.raises(CircuitFileError, match=message.replace("(", r"\(").replace(")", r"\)")):
            read_circuit(tmp_path / name, graph)


MIB_CIRCUIT = Path(__file__).resolve().parents[2] / "shared" / "data" / "mib-ioi-gpt2-eap-ig.json"


@pytest.mark.skipif(not MIB_CIRCUIT.exists(), reason="../shared/data is not beside the checkout")
def test_node_view_bundles_mibs_published_circuit(tmp_path, capsys):
    """MIB's 756-edge GPT-2 IOI circuit: every kept edge lands in exactly one node-pair bundle,
    the node view draws it, and --top keeps the heaviest bundles."""
    from hap.analysis.draw import bundles, circuit_graph
    from hap.cli import main

    circuit, graph = read_circuit(MIB_CIRCUIT)
    weights = bundles(circuit_graph(graph, circuit))
    assert sum(count for count, _ in weights.values()) == circuit.n_edges == 756
    assert len(weights) < circuit.n_edges and max(c for c, _ in weights.values()) == 3
    out = tmp_path / "nodes.png"
    assert main(["draw", str(MIB_CIRCUIT), "--view", "nodes", "--top", "80", "-o", str(out)]) == 0
    assert out.stat().st_size > 20_000
    assert main(["draw", str(MIB_CIRCUIT), "--top", "80", "-o", str(out)]) == 2
    assert "--view nodes" in capsys.readouterr().err
