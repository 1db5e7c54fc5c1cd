"""Exact edge effects against hand-written single-edge patches, ranking metrics by hand, head
roles on the real default model, circuit diagrams and stability."""

from __future__ import annotations

import math

import pandas as pd
import pytest
import torch

from hap.analysis.casestudy import iou, ranking_quality, role_coverage, stability
from hap.analysis.exact import average_precision, compute_effects, edge_effects, roc_auc
from hap.analysis.roles import find_roles, heads_in_circuit, ioi_positions, pattern_scores
from hap.cli import main
from hap.engine import metrics
from hap.engine.ablation import run_activations
from hap.engine.graph import Graph
from hap.io.circuit import Circuit
from hap.io.formats import write_circuit
from hap.models import load_model
from hap.models.shapes import build_checkpoint
from hap.search.selection import top_edges
from hap.tasks import make_task


@pytest.fixture(scope="module")
def val(ioi):
    return ioi.val.subset(slice(0, 16))


def test_exact_effects_equal_hand_written_single_edge_patches(model, graph, val):
    """Removing a0.h3 -> a2.h1<v> alone = subtracting a0.h3's clean-minus-corrupted output from
    head 1's value input of layer 2; removing m2 -> logits alone = subtracting m2's from the
    final residual."""
    full_logits, clean = run_activations(model, graph, val.clean)
    _, corrupted = run_activations(model, graph, val.corrupted)
    full = metrics.at_position(full_logits, val.position)

    def by_hand(sender: str, hook: str, head: int | None) -> tuple[float, float]:
        s = graph.sender_names.index(sender)
        delta = clean.senders[s] - corrupted.senders[s]

        def patch(value, hook):
            value = value.clone()
            if head is None:
                value -= delta
            else:
                value[:, :, head] -= delta
            return value

        logits = metrics.at_position(
            model.run_with_hooks(val.clean, fwd_hooks=[(hook, patch)]), val.position
        )
        d_kl = float(metrics.kl_divergence(full, logits).mean())
        d_ld = float((metrics.logit_diff(logits, val) - metrics.logit_diff(full, val)).mean())
        return d_kl, d_ld

    cases = {
        "a0.h3->a2.h1<v>": by_hand("a0.h3", "blocks.2.hook_v_input", 1),
        "m2->logits": by_hand("m2", "blocks.3.hook_resid_post", None),
        "input->a0.h4<v>": by_hand("input", "blocks.0.hook_v_input", 4),
    }
    edges = torch.tensor([graph.edge_index[name] for name in cases])
    d_kl, d_ld, _ = compute_effects(model, graph, val, edges=edges)
    for i, (name, (kl, ld)) in enumerate(cases.items()):
        assert d_kl[i] == pytest.approx(kl, abs=1e-4), name
        assert d_ld[i] == pytest.approx(ld, abs=1e-4), name
    assert d_kl[2] > 0.5 and d_ld[2] < -1.0  # the model needs its input's value into a0.h4


def test_effects_are_cached_by_content(tmp_path, monkeypatch):
    monkeypatch.setenv("HAP_CACHE", str(tmp_path))
    tiny = load_model(build_checkpoint("tiny", seed=1, root=tmp_path / "shapes"))
    graph = Graph.from_model(tiny)
    data = make_task("ioi", tiny.tokenizer, n_train=0, n_val=6, n_test=0, seed=2).val
    first = edge_effects(tiny, graph, data)
    assert (tmp_path / "exact" / f"{first.key}.pt").exists()
    again = edge_effects(tiny, graph, data)
    assert torch.equal(first.d_kl, again.d_kl) and again.key == first.key
    assert edge_effects(tiny, graph, data, ablation="zero").key != first.key
    assert edge_effects(tiny, graph, data.subset(slice(0, 5))).key != first.key
    assert (first.d_kl >= -1e-6).all() and first.d_kl.numel() == graph.n_edges


def test_auc_and_average_precision_by_hand():
    scores = torch.tensor([0.9, 0.8, 0.7, 0.6, 0.5])
    positive = torch.tensor([True, False, True, False, False])
    # positives ranked 1st and 3rd: AUC = pairs ordered right / all = (3 + 2) / 6
    assert roc_auc(scores, positive) == pytest.approx(5 / 6)
    assert average_precision(scores, positive) == pytest.approx((1 / 1 + 2 / 3) / 2)
    tied = torch.tensor([1.0, 1.0, 0.0])
    assert roc_auc(tied, torch.tensor([True, False, False])) == pytest.approx(0.75)
    assert math.isnan(roc_auc(scores, torch.zeros(5, dtype=torch.bool)))


def test_ioi_positions_and_patterns(model, val):
    pos = ioi_positions(val)
    rows = torch.arange(len(val))
    assert torch.equal(val.clean[rows, pos.io], val.answers[:, 0])
    assert torch.equal(val.clean[rows, pos.s1], val.distractors[:, 0])
    assert torch.equal(val.clean[rows, pos.s2], val.distractors[:, 0])
    assert (pos.s1 < pos.s2).all() and (pos.s2 < pos.end).all()
    scores = pattern_scores(model, val)
    for name, value in scores.items():
        assert value.shape == (4, 8) and (value >= 0).all() and (value <= 1).all(), name


def test_roles_found_on_the_default_model(model, graph, ioi):
    """The two layer-1 heads that attend from END to IO and carry the logit difference directly
    are found as name movers, from the exact effects of their edges into the logits."""
    data = ioi.val
    index = torch.tensor(
        [graph.edge_index[f"a{i}.h{h}->logits"] for i in range(4) for h in range(8)]
    )
    d_kl, d_ld, _ = compute_effects(model, graph, data, edges=index)
    full = torch.zeros(graph.n_edges)
    full[index] = d_ld
    roles = {r.head: r for r in find_roles(model, graph, data, full)}
    movers = sorted(h for h, r in roles.items() if "name mover" in r.roles.split("; "))
    assert movers == ["a1.h0", "a1.h2"]
    for head in movers:
        assert roles[head].end_to_io >= 0.3 and roles[head].direct_effect >= 0.3
    assert roles["a2.h2"].duplicate_token >= 0.3
    assert "s-attention" in roles["a0.h4"].roles and roles["a0.h4"].end_to_s >= 0.5


def test_heads_in_circuit_need_an_in_and_an_out_edge(graph):
    mask = torch.zeros(graph.n_edges, dtype=torch.bool)
    for name in ("input->a0.h1<k>", "a0.h1->logits", "a1.h2->logits", "input->a2.h3<q>"):
        mask[graph.edge_index[name]] = True
    assert heads_in_circuit(graph, mask) == {"a0.h1"}


def _circuits(graph):
    out = {}
    for method, offset in (("eap", 0), ("ep", 5)):
        for seed in (0, 1):
            scores = torch.arange(graph.n_edges, dtype=torch.float).roll(offset + seed)
            mask = top_edges(scores, 100)
            out[(method, 0.94, seed)] = Circuit(method, mask, 0.94, 0.0, seed, scores=scores)
    return out


def test_iou_and_stability_tables(graph):
    a = torch.tensor([True, True, False, False])
    b = torch.tensor([True, False, True, False])
    assert iou(a, b) == pytest.approx(1 / 3)
    circuits = _circuits(graph)
    seeds, methods = stability(circuits)
    eap = seeds[seeds["method"] == "eap"].iloc[0]
    expected = iou(circuits[("eap", 0.94, 0)].mask, circuits[("eap", 0.94, 1)].mask)
    assert eap["iou_mean"] == pytest.approx(expected) and eap["pairs"] == 1
    same = methods[(methods["method_a"] == "ep") & (methods["method_b"] == "ep")]
    assert same["iou"].iloc[0] == 1.0


def test_ranking_and_coverage_tables(graph):
    from hap.analysis.exact import EdgeEffects

    circuits = _circuits(graph)
    truth = torch.arange(graph.n_edges, dtype=torch.float)  # eap seed 0 ranks exactly by it
    effects = EdgeEffects(truth, -truth, 1.0, 1, "corrupted", "k")
    table = ranking_quality(circuits, effects, graph)
    eap = table[table["method"] == "eap"].iloc[0]
    assert eap["k"] == 91 and 0.5 < eap["roc_auc"] <= 1.0
    roles = pd.DataFrame([{"head": "a0.h1", "roles": "name mover"}])
    coverage = role_coverage(circuits, roles, graph)
    assert set(coverage.columns) >= {"method", "name mover", "name mover kept"}


def test_draw_any_circuit_file(tmp_path, graph, capsys):
    scores = torch.linspace(-1, 1, graph.n_edges)
    circuit = Circuit("eap", top_edges(scores, 60), 0.96, 0.0, scores=scores)
    roles = tmp_path / "roles.csv"
    roles.write_text("head,roles\na1.h0,name mover\na2.h2,duplicate-token\n")
    for fmt in ("native", "eap-ig", "eap-ig-pt"):
        write_circuit(circuit, graph, tmp_path / f"c.{fmt}", fmt)
        out = tmp_path / f"{fmt}.png"
        assert (
            main(["draw", str(tmp_path / f"c.{fmt}"), "--roles", str(roles), "-o", str(out)]) == 0
        )
        assert out.stat().st_size > 20_000
    capsys.readouterr()
    assert main(["case-study", "--results", str(roles)]) == 2  # not a results file
    assert "hap: error:" in capsys.readouterr().err


@pytest.mark.parametrize("ablation", ["corrupted", "mean"])
def test_batched_effects_equal_one_masked_forward_per_edge(model, graph, val, ablation):
    from hap.analysis.exact import exact_reference

    generator = torch.Generator().manual_seed(3)
    edges = torch.randperm(graph.n_edges, generator=generator)[:37]
    edges = torch.cat([edges, torch.tensor([graph.n_edges - 1, 0])])  # a logits and a q edge
    d_kl, d_ld, _ = compute_effects(model, graph, val, ablation, edges=edges, chunk=8)
    ref_kl, ref_ld = exact_reference(model, graph, val, edges, ablation)
    assert (d_kl - ref_kl).abs().max() < 1e-4
    assert (d_ld - ref_ld).abs().max() < 1e-4
    assert ref_kl.max() > 1e-3


def test_case_study_end_to_end_on_a_small_sweep(tmp_path, monkeypatch, capsys):
    """A sweep of a 2-layer random GPT-2 with its circuits, then `hap case-study` over it."""
    from hap.experiments.sweep import SweepConfig, run_sweep

    monkeypatch.setenv("HAP_CACHE", str(tmp_path / "cache"))
    checkpoint = build_checkpoint("tiny", seed=1, root=tmp_path / "shapes")
    sweep = SweepConfig(
        methods=("eap", "ep"),
        sparsities=(0.9, 0.94),
        seeds=(0, 1),
        model=str(checkpoint),
        device="cpu",
        n_train=8,
        n_val=8,
        n_test=8,
        settings={"steps": "3"},
        out=tmp_path / "sweep.csv",
        circuits=tmp_path / "circuits",
    )
    run_sweep(sweep, progress=False)
    out, plots = tmp_path / "study", tmp_path / "plots"
    argv = ["case-study", "--results", str(sweep.out), "--out", str(out), "--plots", str(plots)]
    assert main(argv + ["--device", "cpu", "--json"]) == 0
    capsys.readouterr()
    ranking = pd.read_csv(out / "ranking_quality.csv")
    assert len(ranking) == 4 and ranking["roc_auc"].between(0, 1).all()
    seeds = pd.read_csv(out / "iou_seeds.csv")
    assert len(seeds) == 4 and (seeds["pairs"] == 1).all()
    assert len(pd.read_csv(out / "roles.csv")) == 2 * 4  # every head of the 2x4 model
    assert (plots / "circuits_94.png").stat().st_size > 20_000
    assert (plots / "iou.png").exists()
