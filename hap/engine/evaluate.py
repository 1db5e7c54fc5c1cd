"""Evaluate a circuit on a task split: faithfulness to the full model and task performance."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from hap.engine import metrics
from hap.engine.graph import Graph
from hap.engine.patching import Ablation, EdgeMaskedForward, fixed_references
from hap.tasks.base import TaskData, check_vocabulary


@dataclass(frozen=True)
class Evaluation:
    """Means over the split's examples. `faithfulness` is normalised logit difference."""

    kl: float
    logit_diff: float
    accuracy: float
    exact_match: float
    faithfulness: float
    full_logit_diff: float
    empty_logit_diff: float
    n_examples: int


@torch.no_grad()
def evaluate_circuit(
    model,
    graph: Graph,
    data: TaskData,
    circuit: Tensor | None,
    ablation: Ablation | str = Ablation.CORRUPTED,
    batch_size: int = 64,
    reference: TaskData | None = None,
) -> Evaluation:
    """Run the full model, the empty circuit and `circuit` ([n_edges] bool; None = full model).

    Removed edges carry `ablation`'s baseline (mean ablation averages over `reference`, default
    the split itself).
    """
    check_vocabulary(data, model.cfg.d_vocab)
    device = next(model.parameters()).device
    kept = torch.ones(graph.n_edges, dtype=torch.bool) if circuit is None else circuit.cpu()
    forward = EdgeMaskedForward(model, graph, kept.nonzero().squeeze(1))
    empty = EdgeMaskedForward(model, graph, torch.zeros(0, dtype=torch.long))
    ones = torch.ones(forward.n_active, device=device)
    sums = torch.zeros(6, dtype=torch.float64)
    reference = (reference or data).to(device)
    for batch in data.to(device).batches(batch_size):
        full_logits, baseline = fixed_references(model, graph, batch, ablation, reference)
        empty_logits = metrics.at_position(empty(batch.clean, ones[:0], baseline), batch.position)
        logits = metrics.at_position(forward(batch.clean, ones, baseline), batch.position)
        sums += (
            torch.stack(
                [
                    metrics.kl_divergence(full_logits, logits).sum(),
                    metrics.logit_diff(logits, batch).sum(),
                    metrics.accuracy(logits, batch).sum(),
                    metrics.exact_match(full_logits, logits).sum(),
                    metrics.logit_diff(full_logits, batch).sum(),
                    metrics.logit_diff(empty_logits, batch).sum(),
                ]
            )
            .double()
            .cpu()
        )
    kl, ld, acc, em, full_ld, empty_ld = (sums / len(data)).tolist()
    return Evaluation(
        kl=kl,
        logit_diff=ld,
        accuracy=acc,
        exact_match=em,
        faithfulness=metrics.normalized_faithfulness(ld, empty_ld, full_ld),
        full_logit_diff=full_ld,
        empty_logit_diff=empty_ld,
        n_examples=len(data),
    )
