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
from hap.patching import (
    carried_groups,
    receiver_hooks,
    run_activations,
    sender_hook,
    sender_major,
)
from hap.tasks.base import TaskData


def metric_fn(name: str) -> Callable[[Tensor, Tensor, TaskData], Tensor]:
    """(logits at position, full-model logits at position, batch) -> summed scalar to differentiate."""
    if name == "logit_diff":
        return lambda logits, full, batch: metrics.logit_diff(logits, batch).sum()
    if name == "kl":
        return lambda logits, full, batch: -metrics.kl_divergence(full, logits).sum()
    raise ValueError(f"unknown attribution metric {name!r}; choose 'logit_diff' or 'kl'")


def _batch_scores(
    model, graph: Graph, batch: TaskData, metric: Callable, alphas: list[float]
) -> Tensor:
    """[n_senders, n_receivers] sum over this batch's examples and positions, averaged over alphas.

    One forward without grad on the corrupted prompts, then per alpha one forward+backward; the
    alpha = 1 pass (always first) is the clean run, so the clean sender outputs and the full
    model's logits come from it instead of from a pass of their own. Scores are taken during the
    backward, as each receiver's gradient arrives (tensor hooks), so no more than a layer's
    gradients are alive at once: per layer one matmul of the sender-major deltas' prefix with the
    attention receivers' gradients and those of the layer's MLP (and, at the last layer, the
    logits), whose own matmuls then only cover the senders written after that attention.
    """
    if max(alphas) != 1.0:
        raise ValueError("attribution needs alpha = 1 (the clean run) among its points")
    _, corrupted = run_activations(model, graph, batch.corrupted)
    groups = graph.receiver_groups
    sender_names = sorted({sender_hook(g) for g in graph.sender_groups})
    scores = torch.zeros(graph.n_senders, graph.n_receivers, device=corrupted.senders.device)
    state: dict[str, Tensor | None] = {"delta": None, "full": None, "clean_embed": None}

    def add(rows: slice, group_ids: list[int], grads: list[Tensor]) -> None:
        """scores[rows, receivers of group_ids] += deltas[rows] . grads (one matmul)."""
        columns = torch.cat([sender_major(g, "attn" if g.dim() == 4 else "single") for g in grads])
        block = torch.mm(state["delta"][rows], columns.flatten(1).t())
        start = 0
        for index in group_ids:
            g = groups[index]
            scores[rows, g.first : g.first + g.size] += block[:, start : start + g.size]
            start += g.size

    def arrived(grad: Tensor, index: int, slot: int, waiting: dict) -> None:
        g = groups[index]
        if g.kind != "attn":
            waiting[index] = grad
            return
        parts = waiting.setdefault(index, {})
        parts[slot] = grad
        if len(parts) < 3:
            return
        del waiting[index]
        carried = [j for j in carried_groups(graph, index) if j in waiting]
        add(
            slice(0, g.upstream),
            [index, *carried],
            [parts[0], parts[1], parts[2], *(waiting[j] for j in carried)],
        )
        for j in carried:  # the rest of the carried group's senders, written after this read
            add(slice(g.upstream, groups[j].upstream), [j], [waiting.pop(j)])

    for alpha in sorted(alphas, reverse=True):
        waiting: dict = {}
        outputs: dict[str, Tensor] = {}
        if alpha == 1.0:
            embed = _leaf
        else:
            start = corrupted.senders[0]
            embed = partial(_interpolate, start=start, end=state["clean_embed"], alpha=alpha)
        hooks = [("blocks.0.hook_resid_pre", embed)]
        for index, g in enumerate(groups):
            for slot, name in enumerate(receiver_hooks(g, graph.n_layers)):
                watch = partial(arrived, index=index, slot=slot, waiting=waiting)
                hooks.append((name, partial(_receiver, watch=watch, own=g.kind == "attn")))
        if state["delta"] is None:
            hooks += [(name, partial(_keep, store=outputs, name=name)) for name in sender_names]
        with torch.enable_grad():
            logits = model.run_with_hooks(batch.clean, fwd_hooks=hooks)
            at = metrics.at_position(logits, batch.position)
            if state["full"] is None:
                state["full"] = at.detach()
            value = metric(at, state["full"], batch)
            if state["delta"] is None:
                clean = torch.cat(
                    [sender_major(outputs.pop(sender_hook(g)), g.kind) for g in graph.sender_groups]
                ).detach()
                state["clean_embed"] = clean[0].clone()
                state["delta"] = torch.sub(corrupted.senders, clean, out=clean).flatten(1)
            value.backward()
        if waiting:
            raise RuntimeError(f"no gradient reached receiver groups {sorted(waiting)}")
    return scores / len(alphas)


def _keep(value: Tensor, hook, store: dict, name: str) -> Tensor:
    store[name] = value
    return value


def _leaf(value: Tensor, hook) -> Tensor:
    return value.detach().requires_grad_(True)


def _interpolate(value: Tensor, hook, start: Tensor, end: Tensor, alpha: float) -> Tensor:
    return (start + alpha * (end - start)).requires_grad_(True)


def _receiver(value: Tensor, hook, watch: Callable, own: bool) -> Tensor:
    """Watch the gradient of the tensor a receiver reads. q/k/v inputs are each receiver's own
    copy; hook_mlp_in and the logits' residual are the residual stream itself, whose gradient
    also carries the skip connection, so that receiver gets a copy and its gradient alone."""
    if not own:
        value = value.clone()
    value.register_hook(watch)
    return value


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
