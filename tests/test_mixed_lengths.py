"""Prompts of different lengths in one batch: right padding never reaches a position that is read,
so batched figures equal those of each prompt tokenised alone (no padding at all) for the masked
forward, the metrics, every ablation and the attribution scores; a mixed-length split's
evaluation is the weighted mean of its per-length evaluations."""

from __future__ import annotations

import pytest
import torch

from hap.engine import metrics
from hap.engine.ablation import compute_baseline
from hap.engine.evaluate import evaluate_circuit, per_prompt
from hap.engine.patching import EdgeMaskedForward
from hap.search.attribution import attribution_scores
from hap.tasks import make_task
from hap.tasks.base import tokenize

TASK = "tests/data/tasks/handoff.jsonl"  # four sentence frames, 14 to 17 tokens


@pytest.fixture(scope="module")
def task(model):
    return make_task(TASK, model.tokenizer, n_train=0, n_val=0, n_test=24, seed=3)


@pytest.fixture(scope="module")
def mixed(task):
    data = task.test
    assert len(set(data.position.tolist())) >= 3, "the split must mix prompt lengths"
    return data


@pytest.fixture(scope="module")
def alone(task, model):
    """Each test prompt tokenised by itself: no padding anywhere."""
    return [tokenize([e], model.tokenizer, model.prepend_bos) for e in task.test_examples]


def _circuit(graph, seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.rand(graph.n_edges, generator=generator) < 0.3


@pytest.mark.parametrize("ablation", ["corrupted", "mean", "zero"])
def test_per_prompt_figures_batched_equal_one_at_a_time(model, graph, mixed, alone, ablation):
    circuit = _circuit(graph)
    batched = per_prompt(model, graph, mixed, circuit, ablation, batch_size=64, reference=mixed)
    parts = [per_prompt(model, graph, one, circuit, ablation, reference=mixed) for one in alone]
    single = type(batched)(
        *(torch.cat([getattr(p, f) for p in parts]) for f in batched.__dataclass_fields__)
    )
    for name in ("logit_diff", "full_logit_diff", "empty_logit_diff", "kl", "empty_kl"):
        a, b = getattr(batched, name), getattr(single, name)
        assert torch.allclose(a, b, rtol=1e-4, atol=1e-4), (name, (a - b).abs().max())
    for name in ("correct", "full_correct", "empty_correct", "exact_match"):
        assert torch.equal(getattr(batched, name), getattr(single, name)), name
    assert batched.kl.abs().max() > 1e-3  # the circuit differs from the model: not a vacuous check


@pytest.mark.parametrize("ablation", ["corrupted", "mean", "zero"])
def test_soft_masked_logits_batched_equal_one_at_a_time(model, graph, mixed, alone, ablation):
    """The forward EP and HAP train through, with fractional mask values."""
    forward = EdgeMaskedForward(model, graph)
    mask = torch.rand(graph.n_edges, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        baseline = compute_baseline(
            model, graph, mixed.clean, mixed.corrupted, ablation, mixed.clean, mixed.position
        )
        batched = metrics.at_position(forward(mixed.clean, mask, baseline), mixed.position)
        for i, one in enumerate(alone):
            assert one.clean.shape[1] == int(one.position[0]) + 1  # unpadded
            base = compute_baseline(
                model, graph, one.clean, one.corrupted, ablation, mixed.clean, mixed.position
            )
            logits = metrics.at_position(forward(one.clean, mask, base), one.position)
            assert torch.allclose(batched[i], logits[0], rtol=1e-4, atol=1e-4), i


@pytest.mark.parametrize(
    ("ablation", "ig_steps"), [("corrupted", 0), ("mean", 0), ("zero", 0), ("corrupted", 2)]
)
def test_attribution_scores_batched_equal_one_at_a_time(
    model, graph, mixed, alone, ablation, ig_steps
):
    data = mixed.subset(slice(0, 8))
    kwargs = {"ablation": ablation, "ig_steps": ig_steps}
    batched = attribution_scores(model, graph, data, batch_size=8, **kwargs)
    if ablation == "mean":  # the mean is over the scored prompts: the same 8 on both sides
        single = attribution_scores(model, graph, data, batch_size=1, **kwargs)
    else:
        single = sum(attribution_scores(model, graph, one, **kwargs) for one in alone[:8]) / 8
    scale = batched.abs().max()
    assert scale > 0
    assert torch.allclose(batched, single, rtol=1e-3, atol=1e-5 * float(scale))


def test_a_mixed_split_is_the_weighted_mean_of_its_lengths(model, graph, mixed):
    circuit = _circuit(graph, seed=2)
    whole = evaluate_circuit(model, graph, mixed, circuit)
    kl = logit_diff = accuracy = 0.0
    for length in sorted(set(mixed.position.tolist())):
        index = (mixed.position == length).nonzero().squeeze(1)
        part = evaluate_circuit(model, graph, mixed.subset(index), circuit)
        share = len(index) / len(mixed)
        kl += share * part.kl
        logit_diff += share * part.logit_diff
        accuracy += share * part.accuracy
    assert whole.kl == pytest.approx(kl, rel=1e-4)
    assert whole.logit_diff == pytest.approx(logit_diff, rel=1e-4)
    assert whole.accuracy == pytest.approx(accuracy, abs=1e-9)
    low, high = whole.faithfulness_ci
    assert low < whole.faithfulness < high
