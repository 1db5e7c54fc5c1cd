"""Evaluate a circuit on a task split: faithfulness to the full model and task performance."""

from __future__ import annotations

from dataclasses import dataclass, fields

import torch
from torch import Tensor

from hap.engine import metrics
from hap.engine.ablation import Ablation, fixed_references
from hap.engine.graph import Graph
from hap.engine.patching import EdgeMaskedForward
from hap.tasks.base import TaskData, check_vocabulary


@dataclass(frozen=True)
class Evaluation:
    """Means over the split's examples. `faithfulness` is normalised logit difference;
    `*_ci` are bootstrap 95% intervals over the examples (`bootstrap`)."""

    kl: float
    logit_diff: float
    accuracy: float
    exact_match: float
    faithfulness: float
    full_logit_diff: float
    empty_logit_diff: float
    n_examples: int
    faithfulness_ci: tuple[float, float] | None = None
    kl_ci: tuple[float, float] | None = None
    prob_diff: float | None = None  # the circuit's answer minus distractor probability
    logprob: float | None = None  # the circuit's mean log-probability of the answers


@dataclass(frozen=True)
class PerPrompt:
    """Each example's figures ([n] tensors, on the CPU): the circuit's, the full model's and the
    empty circuit's logit difference, KL to the full model and correctness."""

    logit_diff: Tensor
    full_logit_diff: Tensor
    empty_logit_diff: Tensor
    kl: Tensor
    empty_kl: Tensor
    correct: Tensor
    full_correct: Tensor
    empty_correct: Tensor
    exact_match: Tensor
    prob_diff: Tensor
    logprob: Tensor


@torch.no_grad()
def per_prompt(
    model,
    graph: Graph,
    data: TaskData,
    circuit: Tensor | None,
    ablation: Ablation | str = Ablation.CORRUPTED,
    batch_size: int = 64,
    reference: TaskData | None = None,
) -> PerPrompt:
    """Run the full model, the empty circuit and `circuit` ([n_edges] bool; None = full model)
    on every example. Removed edges carry `ablation`'s baseline (mean ablation averages over
    `reference`, default the split itself)."""
    check_vocabulary(data, model.cfg.d_vocab)
    device = next(model.parameters()).device
    kept = torch.ones(graph.n_edges, dtype=torch.bool) if circuit is None else circuit.cpu()
    forward = EdgeMaskedForward(model, graph, kept.nonzero().squeeze(1))
    empty = EdgeMaskedForward(model, graph, torch.zeros(0, dtype=torch.long))
    ones = torch.ones(forward.n_active, device=device)
    reference = (reference or data).to(device)
    parts: dict[str, list[Tensor]] = {f.name: [] for f in fields(PerPrompt)}
    for batch in data.to(device).batches(batch_size):
        full_logits, baseline = fixed_references(model, graph, batch, ablation, reference)
        empty_logits = metrics.at_position(empty(batch.clean, ones[:0], baseline), batch.position)
        logits = metrics.at_position(forward(batch.clean, ones, baseline), batch.position)
        values = {
            "logit_diff": metrics.logit_diff(logits, batch),
            "full_logit_diff": metrics.logit_diff(full_logits, batch),
            "empty_logit_diff": metrics.logit_diff(empty_logits, batch),
            "kl": metrics.kl_divergence(full_logits, logits),
            "empty_kl": metrics.kl_divergence(full_logits, empty_logits),
            "correct": metrics.accuracy(logits, batch),
            "full_correct": metrics.accuracy(full_logits, batch),
            "empty_correct": metrics.accuracy(empty_logits, batch),
            "exact_match": metrics.exact_match(full_logits, logits),
            "prob_diff": metrics.prob_diff(logits, batch),
            "logprob": metrics.logprob(logits, batch),
        }
        for name, value in values.items():
            parts[name].append(value.double().cpu())
    empty_split = torch.zeros(0, dtype=torch.float64)
    return PerPrompt(**{name: torch.cat(p) if p else empty_split for name, p in parts.items()})


def bootstrap(
    figures: PerPrompt, resamples: int = 1000, seed: int = 0
) -> tuple[tuple[float, float], tuple[float, float]]:
    """Bootstrap 95% intervals (percentile) of faithfulness and of mean KL, resampling the
    examples with replacement (`seed` fixed, so a report is reproducible)."""
    n = figures.kl.numel()
    generator = torch.Generator().manual_seed(seed)
    chunk = max(1, 10_000_000 // max(n, 1))  # resamples per draw: the index stays ~80 MB
    faiths, kls = [], []
    for start in range(0, resamples, chunk):
        index = torch.randint(0, n, (min(chunk, resamples - start), n), generator=generator)
        ld, full, empty = (
            t[index].mean(1)
            for t in (figures.logit_diff, figures.full_logit_diff, figures.empty_logit_diff)
        )
        faiths.append((ld - empty) / (full - empty))
        kls.append(figures.kl[index].mean(1))
    faith, kl = torch.cat(faiths), torch.cat(kls)

    def interval(values: Tensor) -> tuple[float, float]:
        low, high = torch.quantile(values, torch.tensor([0.025, 0.975], dtype=values.dtype))
        return float(low), float(high)

    return interval(faith), interval(kl)


def summarize(figures: PerPrompt) -> Evaluation:
    """The split's means (and bootstrap intervals) from its per-prompt figures."""
    ld, full, empty = (
        float(t.mean())
        for t in (figures.logit_diff, figures.full_logit_diff, figures.empty_logit_diff)
    )
    faith_ci, kl_ci = bootstrap(figures) if figures.kl.numel() > 1 else (None, None)
    return Evaluation(
        kl=float(figures.kl.mean()),
        logit_diff=ld,
        accuracy=float(figures.correct.mean()),
        exact_match=float(figures.exact_match.mean()),
        faithfulness=metrics.normalized_faithfulness(ld, empty, full),
        full_logit_diff=full,
        empty_logit_diff=empty,
        n_examples=int(figures.kl.numel()),
        faithfulness_ci=faith_ci,
        kl_ci=kl_ci,
        prob_diff=float(figures.prob_diff.mean()),
        logprob=float(figures.logprob.mean()),
    )


def evaluate_circuit(
    model,
    graph: Graph,
    data: TaskData,
    circuit: Tensor | None,
    ablation: Ablation | str = Ablation.CORRUPTED,
    batch_size: int = 64,
    reference: TaskData | None = None,
) -> Evaluation:
    """`circuit`'s means over `data` (`per_prompt`, `summarize`)."""
    return summarize(per_prompt(model, graph, data, circuit, ablation, batch_size, reference))
