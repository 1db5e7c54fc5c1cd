"""Edge attribution scores (EAP, Syed et al. 2023; EAP-IG, Hanna et al. 2024).

Sign convention, stated once: score(u -> v) = sum over positions of (y~_u - y_u) . d metric / d x_v,
averaged over examples, where y_u / y~_u are u's clean / corrupted outputs and x_v is receiver v's
input. It is the first-order change in the metric when the edge is patched to its corrupted value:
a large positive score for logit difference means patching the edge *raises* the metric, a large
negative one that the edge carries the behaviour. Circuits rank edges by |score|.

EAP takes d metric / d x_v on the clean run; EAP-IG averages it over `ig_steps` points on the line
from the baseline to the clean input embeddings (the "inputs" variant of EAP-IG). Either way the
whole [n_senders, n_receivers] matrix comes from one einsum per receiver group and batch.

Ablations: y~ is whatever removed edges carry (`hap.engine.ablation.Ablation`): the corrupted run's
outputs, their mean over a reference split, or zero. The IG path starts at the baseline's input
embedding (the corrupted prompt's, the mean embedding, or zero).

EAP-IG's points (`ig_points`): "left" (the default) takes alpha = 0, 1/k, ..., (k-1)/k, the rule
of the reference library (hannamw/EAP-IG) and so of MIB: the same scores as theirs. "right" takes
alpha = 1/k, ..., 1: the clean run is one of the points (k = 1 is plain EAP) and doubles as the
pass that records the clean activations, one forward fewer. Both are Riemann sums of the same
integral with errors of the same order; neither is more accurate in general.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

import torch
from torch import Tensor

from hap.engine import metrics
from hap.engine.ablation import (
    Ablation,
    Baseline,
    compute_baseline,
    post_norm_hooks,
    receiver_hooks,
    run_activations,
    sender_hook,
    sender_major,
)
from hap.engine.graph import Graph, post_norm_module
from hap.engine.patching import carried_groups
from hap.errors import RunFailed
from hap.tasks.base import TaskData

METRICS = ("logit_diff", "prob_diff", "logprob", "kl")


def metric_fn(name: str) -> Callable[[Tensor, Tensor, TaskData], Tensor]:
    """(logits at position, full-model logits at position, batch) -> summed scalar to differentiate."""
    per_example = {
        "logit_diff": lambda logits, full, batch: metrics.logit_diff(logits, batch),
        "prob_diff": lambda logits, full, batch: metrics.prob_diff(logits, batch),
        "logprob": lambda logits, full, batch: metrics.logprob(logits, batch),
        "kl": lambda logits, full, batch: -metrics.kl_divergence(full, logits),
    }
    if name not in per_example:
        raise ValueError(f"unknown attribution metric {name!r}; choose one of {METRICS}")
    chosen = per_example[name]
    return lambda logits, full, batch: chosen(logits, full, batch).sum()


IG_POINTS = ("left", "right")


def ig_alphas(ig_steps: int, points: str = "left") -> list[float]:
    """The interpolation points of EAP-IG (module docstring); [1.0] (plain EAP) for ig_steps 0."""
    if points not in IG_POINTS:
        raise ValueError(f"ig_points must be one of {IG_POINTS}, got {points!r}")
    if ig_steps <= 0:
        return [1.0]
    offset = 0 if points == "left" else 1
    return [(k + offset) / ig_steps for k in range(ig_steps)]


def _batch_scores(
    model,
    graph: Graph,
    batch: TaskData,
    metric: Callable,
    alphas: list[float],
    baseline: Baseline,
) -> Tensor:
    """[n_senders, n_receivers] sum over this batch's examples and positions, averaged over alphas.

    Per alpha one forward+backward. When alpha = 1 is among the points its pass (run first) is
    the clean run, so the clean sender outputs and the full model's logits come from it; otherwise
    one forward without grad records them first. Scores are taken during the
    backward, as each receiver's gradient arrives (tensor hooks), so no more than a layer's
    gradients are alive at once: per layer one matmul of the sender-major deltas' prefix with the
    attention receivers' gradients and those of the layer's MLP (and, at the last layer, the
    logits), whose own matmuls then only cover the senders written after that attention.
    """
    groups = graph.receiver_groups
    sender_names = sorted({sender_hook(g) for g in graph.sender_groups})
    scores = torch.zeros(graph.n_senders, graph.n_receivers, device=baseline.senders.device)
    state: dict[str, Tensor | None] = {"delta": None, "full": None, "clean_embed": None}
    if 1.0 not in alphas:
        logits, clean = run_activations(model, graph, batch.clean)
        state["full"] = metrics.at_position(logits, batch.position)
        state["clean_embed"] = clean.senders[0]
        state["delta"] = (baseline.senders - clean.senders).flatten(1)

    def add(rows: slice, group_ids: list[int], grads: list[Tensor]) -> None:
        """scores[rows, receivers of group_ids] += deltas[rows] . grads (one matmul)."""
        columns = torch.cat([sender_major(g, "attn" if g.dim() == 4 else "single") for g in grads])
        block = torch.mm(state["delta"][rows], columns.flatten(1).t())
        start = 0
        for index in group_ids:
            g = groups[index]
            scores[rows, g.first : g.first + g.size] += block[:, start : start + g.size]
            start += g.size

    points: dict[int, Tensor] = {}  # post-norm models: layer -> this pass's pre-norm head sum

    def through_norms(index: int, grads: list[Tensor]) -> None:
        """Post-attention norms: a head reaches receiver r through its layer's norm, so its score
        takes the norm's Jacobian at this pass's pre-norm sum: (y~ - y) . J^T g_r. `add` gave
        the heads' rows (y~ - y) . g_r; this adds the difference."""
        g = groups[index]
        columns = torch.cat([sender_major(x, "attn" if x.dim() == 4 else "single") for x in grads])
        for s in graph.sender_groups:
            if s.kind != "attn" or s.first >= g.upstream:
                continue
            pulled = _norm_vjp(post_norm_module(model, s.layer), points[s.layer], columns)
            rows = slice(s.first, s.first + s.size)
            correction = torch.mm(state["delta"][rows], (pulled - columns).flatten(1).t())
            scores[rows, g.first : g.first + g.size] += correction

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
        if graph.post_norm:
            through_norms(index, [parts[0], parts[1], parts[2]])
            for j in carried:
                through_norms(j, [waiting[j]])
        for j in carried:  # the rest of the carried group's senders, written after this read
            add(slice(g.upstream, groups[j].upstream), [j], [waiting.pop(j)])

    for alpha in sorted(alphas, reverse=True):
        waiting: dict = {}
        outputs: dict[str, Tensor] = {}
        if alpha == 1.0:
            embed = _leaf
        else:
            start = baseline.senders[0]
            embed = partial(_interpolate, start=start, end=state["clean_embed"], alpha=alpha)
        hooks = [("blocks.0.hook_resid_pre", embed)]
        for index, g in enumerate(groups):
            for slot, name in enumerate(receiver_hooks(g, graph.n_layers)):
                watch = partial(arrived, index=index, slot=slot, waiting=waiting)
                hooks.append((name, partial(_receiver, watch=watch, own=g.kind == "attn")))
        if state["delta"] is None:
            hooks += [(name, partial(_keep, store=outputs, name=name)) for name in sender_names]
        if graph.post_norm:
            hooks += [
                (post_norm_hooks(layer)[0], partial(_point, store=points, layer=layer))
                for layer in range(graph.n_layers)
            ]
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
                state["delta"] = torch.sub(baseline.senders, clean, out=clean).flatten(1)
            value.backward()
        if waiting:
            raise RuntimeError(f"no gradient reached receiver groups {sorted(waiting)}")
    return scores / len(alphas)


def _keep(value: Tensor, hook, store: dict, name: str) -> Tensor:
    store[name] = value
    return value


def _point(value: Tensor, hook, store: dict, layer: int) -> Tensor:
    store[layer] = value.detach()
    return value


def _norm_vjp(norm, point: Tensor, cotangents: Tensor) -> Tensor:
    """[k, batch, pos, d]: J^T c for each cotangent c, J the Jacobian of `norm` at `point`."""
    with torch.enable_grad():
        x = point.unsqueeze(0).expand_as(cotangents).clone().requires_grad_(True)
        (pulled,) = torch.autograd.grad(norm(x), x, cotangents)
    return pulled


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
    ablation: Ablation | str = Ablation.CORRUPTED,
    ig_points: str = "left",
) -> Tensor:
    """[n_edges] EAP (ig_steps=0) or EAP-IG (ig_steps>0, at `ig_alphas(ig_steps, ig_points)`)
    scores, averaged over `data`'s examples, against `ablation`'s baseline (mean ablation
    averages over `data`)."""
    fn = metric_fn(metric)
    alphas = ig_alphas(ig_steps, ig_points)
    device = next(model.parameters()).device
    data = data.to(device)
    total = torch.zeros(graph.n_senders, graph.n_receivers, device=device)
    for batch in data.batches(batch_size):
        baseline = compute_baseline(
            model, graph, batch.clean, batch.corrupted, ablation, data.clean, data.position
        )
        total += _batch_scores(model, graph, batch, fn, alphas, baseline)
    scores = graph.edges_of(total).cpu() / len(data)
    if not torch.isfinite(scores).all():
        raise RunFailed(f"{int((~torch.isfinite(scores)).sum())} attribution scores are not finite")
    return scores
