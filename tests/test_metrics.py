import math

import torch

from hap.engine import metrics
from hap.tasks.base import TaskData


def _data(answers, distractors, answer_mask=None, distractor_mask=None) -> TaskData:
    a, d = torch.tensor(answers), torch.tensor(distractors)
    am = torch.ones_like(a, dtype=torch.bool) if answer_mask is None else torch.tensor(answer_mask)
    dm = (
        torch.ones_like(d, dtype=torch.bool)
        if distractor_mask is None
        else torch.tensor(distractor_mask)
    )
    n = a.shape[0]
    z = torch.zeros(n, 1, dtype=torch.long)
    return TaskData(z, z, torch.zeros(n, dtype=torch.long), a, am, d, dm)


def test_logit_diff_and_accuracy_by_hand():
    logits = torch.tensor([[1.0, 3.0, 0.5, -1.0], [2.0, 0.0, 1.0, 4.0]])
    data = _data([[1], [1]], [[0], [3]])
    assert torch.allclose(metrics.logit_diff(logits, data), torch.tensor([2.0, -4.0]))
    assert torch.equal(metrics.accuracy(logits, data), torch.tensor([1.0, 0.0]))


def test_multi_answer_logit_diff_ignores_padding():
    logits = torch.tensor([[1.0, 3.0, 0.5, -1.0]])
    # answers {1, 2} (third slot padding), distractors {0, 3}
    data = _data([[1, 2, 1]], [[0, 3]], answer_mask=[[True, True, False]])
    assert torch.allclose(metrics.logit_diff(logits, data), torch.tensor([1.75 - 0.0]))
    assert metrics.accuracy(logits, data).item() == 1.0


def test_kl_by_hand():
    full = torch.tensor([[0.0, math.log(3.0)]])  # p = (1/4, 3/4)
    circuit = torch.tensor([[0.0, 0.0]])  # q = (1/2, 1/2)
    expected = 0.25 * math.log(0.5) + 0.75 * math.log(1.5)
    assert math.isclose(metrics.kl_divergence(full, circuit).item(), expected, rel_tol=1e-5)
    assert metrics.kl_divergence(full, full).abs().item() < 1e-7


def test_exact_match_and_positions():
    logits = torch.arange(24, dtype=torch.float).reshape(2, 3, 4)
    picked = metrics.at_position(logits, torch.tensor([2, 0]))
    assert torch.equal(picked, torch.stack([logits[0, 2], logits[1, 0]]))
    flipped = picked.flip(-1)
    assert torch.equal(metrics.exact_match(picked, picked), torch.ones(2))
    assert torch.equal(metrics.exact_match(picked, flipped), torch.zeros(2))


def test_normalized_faithfulness():
    assert metrics.normalized_faithfulness(2.5, 1.0, 4.0) == 0.5
    assert metrics.normalized_faithfulness(4.0, 1.0, 4.0) == 1.0
    assert math.isnan(metrics.normalized_faithfulness(1.0, 2.0, 2.0))
