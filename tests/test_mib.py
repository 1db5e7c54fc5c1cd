"""MIB's grid, rounding and areas, on the real default model."""

from __future__ import annotations

import json
import math

import pytest
import torch

from hap.cli import main
from hap.engine.evaluate import evaluate_circuit
from hap.engine.live import live_edges
from hap.experiments.mib import MIB_FRACTIONS, MIBPoint, MIBResult, edges_at, run_mib, trapezoid
from hap.experiments.registry import get_backend, resolve_settings


def _top_signed(scores: torch.Tensor, n: int) -> torch.Tensor:
    order = torch.argsort(-scores, descending=True, stable=True)
    mask = torch.zeros(scores.numel(), dtype=torch.bool)
    mask[order[:n]] = True
    return mask


def _point(fraction: float, f: float, ranking: str = "signed") -> MIBPoint:
    return MIBPoint("m", ranking, fraction, 0, 0, fraction, f, 0.0, 0.0)


def test_areas_are_mibs_trapezoids_on_the_nominal_fractions():
    curve = [_point(0.001, 0.0), _point(0.1, 0.5), _point(1.0, 1.0)]
    assert math.isclose(trapezoid(curve, lambda f: f), 0.099 * 0.25 + 0.9 * 0.75)
    assert math.isclose(trapezoid(curve, lambda f: abs(1 - f)), 0.099 * 0.75 + 0.9 * 0.25)
    failed = [*curve[:2], MIBPoint("m", "signed", 1.0, 0, 0, 1.0, math.nan, 0, 0, "failed")]
    assert trapezoid(failed, lambda f: f) is None
    result = MIBResult(
        curve + [_point(0.001, 1.0, "absolute"), _point(0.1, 1.0, "absolute"),
                 _point(1.0, 1.0, "absolute")], 1.0, 0.0, 100,
    )  # fmt: skip
    assert result.areas()["m"]["cmd"] == 0.0  # the absolute curve, not the signed one


def test_grid_rounding_is_mibs_floor(graph):
    counts = [edges_at(graph, f) for f in MIB_FRACTIONS]
    assert counts == [1, 3, 7, 15, 30, 75, 151, 303, 759, 1519]


def test_mib_on_the_default_model(model, graph, ioi):
    configs = resolve_settings(["eap", "ep"], {"steps": "20"})
    fractions = (0.01, 0.1, 1.0)
    result = run_mib(model, graph, ioi, ["eap", "ep"], configs, fractions, seed=0)
    eap_signed = result.curve("eap", "signed")
    eap_abs = result.curve("eap", "absolute")
    ep = result.curve("ep", "learned")
    assert [p.n_requested for p in ep] == [15, 151, 1519]
    assert len(eap_signed) == len(eap_abs) == len(ep) == 3
    for curve in (eap_signed, eap_abs, ep):
        assert curve[-1].n_edges == graph.n_edges
        assert curve[-1].faithfulness == pytest.approx(1.0, abs=1e-5)
        assert all(p.n_edges <= p.n_requested for p in curve)  # pruning only removes
    assert [p.faithfulness for p in eap_signed] != [p.faithfulness for p in eap_abs]
    # a point is the evaluation of that circuit: recompute one by hand (signed = -score first)
    scores = get_backend("eap")(model, graph, ioi, 0.9, config=configs["eap"]).scores
    kept = live_edges(graph, _top_signed(scores, 151))
    by_hand = evaluate_circuit(model, graph, ioi.test, kept)
    assert eap_signed[1].faithfulness == pytest.approx(by_hand.faithfulness, abs=1e-6)
    assert eap_signed[1].n_edges == int(kept.sum())
    areas = result.areas()
    assert math.isclose(areas["ep"]["cpr"], trapezoid(ep, lambda f: f))
    assert math.isclose(areas["eap"]["cmd"], trapezoid(eap_abs, lambda f: abs(1 - f)))
    assert 0 < areas["ep"]["cpr"] <= 1.0
    empty = evaluate_circuit(model, graph, ioi.test, torch.zeros(graph.n_edges, dtype=torch.bool))
    assert result.empty_logit_diff == pytest.approx(empty.logit_diff)


def test_cli_mib_writes_json_and_plot(tmp_path, capsys):
    out, plot = tmp_path / "mib.json", tmp_path / "mib.png"
    argv = ["mib", "--methods", "eap", "--fractions", "0.05,1", "--n-test", "16"]
    argv += ["--device", "cpu", "--out", str(out), "--plot", str(plot)]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "CPR" in printed and "CMD" in printed
    summary = json.loads(out.read_text())
    assert summary["fractions"] == [0.05, 1.0] and summary["n_graph_edges"] == 1519
    assert set(summary["areas"]["eap"]) == {"cpr", "cmd"}
    assert plot.stat().st_size > 10_000
