"""Edge attribution scores (EAP, Syed et al. 2023; EAP-IG, Hanna et al. 2024).

Sign convention, stated once: score(u -> v) = sum over positions of (y~_u - y_u) . d metric / d x_v,
averaged over examples, where y_u / y~_u are u's clean / corrupted outputs and x_v is receiver v's
input. It is the first-order change in the metric when the edge is patched to its corrupted value:
a large positive score for logit difference means patching the edge *raises* the metric, a large
negative one that the edge carries the behaviour. Circuits rank edges by |score|.

EAP takes d metric / d x_v on the clean run; EAP-IG averages it over `ig_steps` points on the line
from the corrupted to the clean input embeddings (the "inputs" variant of EAP-IG). Either way the
whole [n_senders, n_receivers] matrix comes from one einsum per receiver group and batch.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

import torch
from torch import Tensor

from hap import metrics
from hap.graph import Graph
from hap.patching import receiver_hooks, run_activations
from hap.tasks.base import TaskData


def metric_fn(name: str) -> Callable[[Tensor, Tensor, TaskData], Tensor]:
    """(logits at position, full-model logits at position, batch) -> summed scalar to differentiate."""
    if name == "logit_diff":
        return lambda logits, full, batch: metrics.logit_diff(logits, batch).sum()
    if name == "kl":
        return lambda logits, full, batch: -metrics.kl_divergence(full, logits).sum()
    raise ValueError(f"unknown attribution metric {name!r}; choose 'logit_diff' or 'kl'")


def _keep_copy(value: Tensor, hook, store: dict, key: tuple[int, int]) -> Tensor:
    """Hand the receiver a copy and keep it, so the gradient taken is the receiver's alone: the
    bridge's hook_mlp_in tensor is the residual stream itself, whose gradient also carries the
    skip connection."""
    store[key] = value.clone()
    return store[key]


def _batch_scores(
    model, graph: Graph, batch: TaskData, metric: Callable, alphas: list[float]
) -> Tensor:
    """[n_senders, n_receivers] sum over this batch's examples and positions, averaged over alphas."""
    full_logits, clean = run_activations(model, graph, batch.clean)
    _, corrupted = run_activations(model, graph, batch.corrupted)
    full = metrics.at_position(full_logits, batch.position)
    delta = corrupted.senders - clean.senders  # [batch, pos, n_senders, d_model]
    hook_specs = [
        (name, index, slot)
        for index, g in enumerate(graph.receiver_groups)
        for slot, name in enumerate(receiver_hooks(g, graph.n_layers))
    ]
    scores = torch.zeros(graph.n_senders, graph.n_receivers, device=delta.device)

    for alpha in alphas:
        captured: dict[tuple[int, int], Tensor] = {}

        def embed(value: Tensor, hook, alpha: float = alpha) -> Tensor:
            start = corrupted.senders[:, :, 0]
            return (start + alpha * (clean.senders[:, :, 0] - start)).requires_grad_(True)

        hooks = [("blocks.0.hook_resid_pre", embed)] + [
            (name, partial(_keep_copy, store=captured, key=(index, slot)))
            for name, index, slot in hook_specs
        ]
        with torch.enable_grad():
            logits = model.run_with_hooks(batch.clean, fwd_hooks=hooks)
            value = metric(metrics.at_position(logits, batch.position), full, batch)
            keys = list(captured)
            grads = dict(zip(keys, torch.autograd.grad(value, [captured[k] for k in keys])))
        for index, g in enumerate(graph.receiver_groups):
            if g.kind == "attn":
                grad = torch.cat([grads[(index, slot)] for slot in range(3)], 2)
            else:
                grad = grads[(index, 0)].unsqueeze(2)
            scores[: g.upstream, g.first : g.first + g.size] += torch.einsum(
                "bpsd,bprd->sr", delta[:, :, : g.upstream], grad
            )
    return scores / len(alphas)


def attribution_scores(
    model,
    graph: Graph,
    data: TaskData,
    metric: str = "logit_diff",
    ig_steps: int = 0,
    batch_size: int = 32,
) -> Tensor:
    """[n_edges] EAP (ig_steps=0) or EAP-IG (ig_steps>0) scores, averaged over `data`'s examples.

    EAP-IG's points are alpha = 1/k, 2/k, ..., 1 for k = ig_steps (a right Riemann sum; alpha = 1
    is the clean run, so EAP is the one-point case).
    """
    fn = metric_fn(metric)
    alphas = [1.0] if ig_steps <= 0 else [(k + 1) / ig_steps for k in range(ig_steps)]
    device = next(model.parameters()).device
    total = torch.zeros(graph.n_senders, graph.n_receivers, device=device)
    for batch in data.to(device).batches(batch_size):
        total += _batch_scores(model, graph, batch, fn, alphas)
    return graph.edges_of(total).cpu() / len(data)
