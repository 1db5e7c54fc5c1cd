"""Metrics on next-token logits at each example's metric position.

Conventions: logits are read at `TaskData.position`; KL is KL(full || circuit) in nats, averaged
over examples; logit difference is mean(answer logits) - mean(distractor logits), so positive means
the model prefers a correct continuation. Every per-example function returns shape [n].
"""

from __future__ import annotations

import torch
from torch import Tensor

from hap.tasks.base import TaskData


def at_position(logits: Tensor, position: Tensor) -> Tensor:
    """[n, pos, vocab] -> [n, vocab]: the logits each example's metric reads."""
    return logits[torch.arange(logits.shape[0], device=logits.device), position]


def _masked_mean(values: Tensor, mask: Tensor) -> Tensor:
    return (values * mask).sum(-1) / mask.sum(-1)


def logit_diff(logits: Tensor, data: TaskData) -> Tensor:
    """[n]: mean answer logit minus mean distractor logit (logits already at position, [n, vocab])."""
    answers = logits.gather(-1, data.answers)
    distractors = logits.gather(-1, data.distractors)
    return _masked_mean(answers, data.answer_mask) - _masked_mean(distractors, data.distractor_mask)


def prob_diff(logits: Tensor, data: TaskData) -> Tensor:
    """[n]: mean answer probability minus mean distractor probability (bounded, unlike the
    logit difference, so a few confident prompts cannot dominate the mean)."""
    probs = logits.float().softmax(-1)
    answers = probs.gather(-1, data.answers)
    distractors = probs.gather(-1, data.distractors)
    return _masked_mean(answers, data.answer_mask) - _masked_mean(distractors, data.distractor_mask)


def logprob(logits: Tensor, data: TaskData) -> Tensor:
    """[n]: the mean log-probability of the answers (needs no distractor)."""
    answers = logits.float().log_softmax(-1).gather(-1, data.answers)
    return _masked_mean(answers, data.answer_mask)


def accuracy(logits: Tensor, data: TaskData) -> Tensor:
    """[n] in {0, 1}: the best answer outscores every distractor."""
    neg = torch.finfo(logits.dtype).min
    best_answer = logits.gather(-1, data.answers).masked_fill(~data.answer_mask, neg).amax(-1)
    best_distractor = (
        logits.gather(-1, data.distractors).masked_fill(~data.distractor_mask, neg).amax(-1)
    )
    return (best_answer > best_distractor).float()


def kl_divergence(full: Tensor, circuit: Tensor) -> Tensor:
    """[n]: KL(full || circuit) in nats over the whole vocabulary, from logits [n, vocab]
    (in float32 at least: a bf16 model's logits are upcast first)."""
    log_p = full.float().log_softmax(-1)
    log_q = circuit.float().log_softmax(-1)
    return (log_p.exp() * (log_p - log_q)).sum(-1)


def exact_match(full: Tensor, circuit: Tensor) -> Tensor:
    """[n] in {0, 1}: the circuit's top token equals the full model's."""
    return (full.argmax(-1) == circuit.argmax(-1)).float()


def normalized_faithfulness(circuit: float, empty: float, full: float) -> float:
    """(m(C) - m(empty)) / (m(N) - m(empty)): 1 recovers the full model, 0 the empty circuit."""
    denominator = full - empty
    if denominator == 0:
        return float("nan")
    return (circuit - empty) / denominator
