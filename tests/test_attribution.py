"""EAP-IG's integration points: the reference library's (and MIB's) by default."""

from __future__ import annotations

import pytest
import torch

from hap.engine.ablation import compute_baseline
from hap.search.attribution import _batch_scores, attribution_scores, ig_alphas, metric_fn


def test_ig_points_are_the_librarys_by_default():
    assert ig_alphas(5) == [0.0, 0.2, 0.4, 0.6, 0.8]  # hannamw/EAP-IG: k / steps, k = 0..steps-1
    assert ig_alphas(5, "right") == [0.2, 0.4, 0.6, 0.8, 1.0]
    assert ig_alphas(0) == [1.0]
    with pytest.raises(ValueError):
        ig_alphas(3, "middle")


def test_eapig_scores_average_the_gradients_at_its_points(model, graph, ioi):
    batch = ioi.train.subset(slice(0, 8))
    baseline = compute_baseline(model, graph, batch.clean, batch.corrupted)

    def at(alphas: list[float]) -> torch.Tensor:
        total = _batch_scores(model, graph, batch, metric_fn("logit_diff"), alphas, baseline)
        return graph.edges_of(total).cpu() / len(batch)

    left = attribution_scores(model, graph, batch, ig_steps=2)
    right = attribution_scores(model, graph, batch, ig_steps=2, ig_points="right")
    tolerance = 1e-6 * float(left.abs().max())
    assert (left - (at([0.0]) + at([0.5])) / 2).abs().max() < tolerance
    assert (right - (at([0.5]) + at([1.0])) / 2).abs().max() < tolerance
    assert (attribution_scores(model, graph, batch) - at([1.0])).abs().max() < tolerance
    assert (left - right).abs().max() > 100 * tolerance  # the two rules are not the same
