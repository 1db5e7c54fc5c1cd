"""Exact per-edge effects: the ground truth that attribution scores estimate.

For every edge, the full model with only that edge patched to its baseline (one masked forward per
edge; every other edge clean), on the task's validation split:

    d_kl[e] = KL(full || full without e)            (>= 0; what Edge Pruning's loss sees)
    d_logit_diff[e] = LD(full without e) - LD(full)  (the sign EAP's scores estimate)

EAP's score of e is the first-order estimate of d_logit_diff[e] (hap.search.attribution), so the two can
be compared edge by edge. Edges are batched: one clean forward over `chunk` copies of the split,
each copy with one edge removed (`compute_effects`), checked against one masked forward per edge
(`exact_reference`); the full model's logits and the baseline are computed once. On a CPU the
cost is the forwards themselves (edges x prompts rows; measured: batching neither helps nor
hurts there); on a GPU the larger batches fill the device.

Results are cached in the user's cache folder (`$HAP_CACHE`, else `~/.cache/hap`) under a content
hash of the model's weights, the prompts, the ablation and this module's version, so sweeps and
reruns reuse them and any change to what they depend on recomputes them.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import torch
from torch import Tensor

from hap.engine import metrics
from hap.engine.ablation import Ablation, compute_baseline, fixed_references, run_activations
from hap.engine.graph import Graph, post_norm_module
from hap.engine.patching import EdgeMaskedForward
from hap.io.atomic import atomic_write
from hap.progress import bar
from hap.tasks.base import TaskData

VERSION = 1  # bump when the definition of an effect changes: old cache entries stop matching


@dataclass(frozen=True)
class EdgeEffects:
    """d_kl, d_logit_diff: [n_edges] (module docstring). full_logit_diff: LD of the full model on
    the split. key: the cache key it was computed under."""

    d_kl: Tensor
    d_logit_diff: Tensor
    full_logit_diff: float
    n_examples: int
    ablation: str
    key: str

    def importance(self) -> Tensor:
        """[n_edges] how much removing the edge alone moves the model: d_kl."""
        return self.d_kl


def cache_dir() -> Path:
    from hap.models.zoo import cache_root

    return cache_root() / "exact"


def cache_key(model, data: TaskData, ablation: str) -> str:
    """A hash of everything the effects depend on: the weights, the prompts, the ablation."""
    digest = hashlib.sha1(f"v{VERSION}|{ablation}|{getattr(model, 'name', '')}".encode())
    for name, param in sorted(model.state_dict().items()):
        digest.update(name.encode())
        digest.update(param.detach().float().cpu().contiguous().numpy().tobytes())
    for tensor in (data.clean, data.corrupted, data.position, data.answers, data.distractors):
        digest.update(tensor.cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()[:20]


@torch.no_grad()
def compute_effects(
    model,
    graph: Graph,
    data: TaskData,
    ablation: Ablation | str = Ablation.CORRUPTED,
    edges: Tensor | None = None,
    chunk: int = 8,
) -> tuple[Tensor, Tensor, float]:
    """(d_kl, d_logit_diff) for `edges` (default: all), and the full model's logit difference.
    Mean ablation averages over `data` itself.

    Removing one edge s -> r changes only what receiver r reads, by -(y_s - y~_s), and nothing
    upstream of r, so y_s is the clean run's. That lets `chunk` edges share one forward: the
    prompts are repeated once per edge and each copy's receiver input loses its own edge's delta
    (one clean forward, no masks). With post-attention norms a head's removal takes
    norm(pre) - norm(pre - delta) from the receiver, pre its layer's clean pre-norm sum.
    `exact_reference` is the one-masked-forward-per-edge definition it is tested against."""
    from hap.engine.ablation import receiver_hooks

    device = next(model.parameters()).device
    data = data.to(device)
    edges = torch.arange(graph.n_edges) if edges is None else edges.cpu()
    full_logits, clean = run_activations(model, graph, data.clean)
    baseline = compute_baseline(
        model, graph, data.clean, data.corrupted, ablation, data.clean, data.position
    )
    deltas = clean.senders - baseline.senders  # [n_senders, n, pos, d_model]
    if graph.post_norm:  # what a head's removal takes from a receiver, through its layer's norm
        for s in graph.sender_groups:
            if s.kind == "attn":
                norm, pre = post_norm_module(model, s.layer), clean.attn_pre[s.layer]
                rows = deltas[s.first : s.first + s.size]
                deltas[s.first : s.first + s.size] = norm(pre) - norm(pre - rows)
    full = metrics.at_position(full_logits, data.position)
    full_ld = metrics.logit_diff(full, data)
    n = len(data)
    group_of = torch.empty(graph.n_receivers, dtype=torch.long)
    for index, g in enumerate(graph.receiver_groups):
        group_of[g.first : g.first + g.size] = index
    d_kl = torch.zeros(edges.numel())
    d_ld = torch.zeros(edges.numel())
    shown = bar(total=edges.numel(), desc="exact effects", leave=False)
    for start in range(0, edges.numel(), chunk):
        part = edges[start : start + chunk]
        k = part.numel()
        senders, receivers = graph.edge_sender[part], graph.edge_receiver[part]
        hooks = []
        for index in torch.unique(group_of[receivers]).tolist():
            g = graph.receiver_groups[index]
            mine = (group_of[receivers] == index).nonzero().squeeze(1)
            slots = receivers[mine] - g.first  # attention: part * n_heads + head
            for part_index, name in enumerate(receiver_hooks(g, graph.n_layers)):
                if g.kind == "attn":
                    sel = mine[slots // graph.n_heads == part_index]
                    heads = (receivers[sel] - g.first) % graph.n_heads
                else:
                    sel, heads = mine, None
                if sel.numel():
                    hooks.append(
                        (
                            name,
                            partial(
                                _subtract,
                                copies=sel,
                                heads=heads,
                                deltas=deltas[senders[sel]],
                                k=k,
                                n=n,
                            ),
                        )
                    )
        tokens = data.clean.repeat(k, 1)
        logits = model.run_with_hooks(tokens, fwd_hooks=hooks)
        logits = metrics.at_position(logits, data.position.repeat(k)).view(k, n, -1)
        for i in range(k):
            d_kl[start + i] = metrics.kl_divergence(full, logits[i]).mean().cpu()
            d_ld[start + i] = (metrics.logit_diff(logits[i], data) - full_ld).mean().cpu()
        shown.update(k)
    shown.close()
    return d_kl, d_ld, float(full_ld.mean())


def _subtract(
    value: Tensor, hook, copies: Tensor, heads: Tensor | None, deltas: Tensor, k: int, n: int
):
    """Copy c of the prompts loses deltas[i] at its receiver (head heads[i] of a q/k/v input, or
    the whole residual an MLP or the logits read) for each i with copies[i] = c."""
    value = value.clone()
    shaped = value.view(k, n, *value.shape[1:])
    if heads is None:
        shaped.index_put_((copies.to(value.device),), -deltas, accumulate=True)
    else:  # [k, n, pos, heads, d] -> [k, heads, n, pos, d]
        shaped.permute(0, 3, 1, 2, 4).index_put_(
            (copies.to(value.device), heads.to(value.device)), -deltas, accumulate=True
        )
    return value


@torch.no_grad()
def exact_reference(
    model,
    graph: Graph,
    data: TaskData,
    edges: Tensor,
    ablation: Ablation | str = Ablation.CORRUPTED,
) -> tuple[Tensor, Tensor]:
    """The definition, one masked forward per edge (slow; the test of `compute_effects`)."""
    device = next(model.parameters()).device
    data = data.to(device)
    forward = EdgeMaskedForward(model, graph)
    full, baseline = fixed_references(model, graph, data, ablation, data)
    mask = torch.ones(graph.n_edges, device=device)
    d_kl, d_ld = torch.zeros(edges.numel()), torch.zeros(edges.numel())
    for i, edge in enumerate(edges.tolist()):
        mask[edge] = 0.0
        logits = metrics.at_position(forward(data.clean, mask, baseline), data.position)
        mask[edge] = 1.0
        d_kl[i] = metrics.kl_divergence(full, logits).mean().cpu()
        d_ld[i] = (metrics.logit_diff(logits, data) - metrics.logit_diff(full, data)).mean().cpu()
    return d_kl, d_ld


def edge_effects(
    model,
    graph: Graph,
    data: TaskData,
    ablation: Ablation | str = Ablation.CORRUPTED,
    cache: bool = True,
) -> EdgeEffects:
    """Every edge's exact effect on `data`, from the cache when it holds them (module
    docstring)."""
    ablation = Ablation(ablation).value
    key = cache_key(model, data, ablation)
    path = cache_dir() / f"{key}.pt"
    if cache and path.exists():
        stored = torch.load(path, map_location="cpu", weights_only=True)
        if stored["d_kl"].numel() == graph.n_edges:
            return EdgeEffects(
                stored["d_kl"],
                stored["d_logit_diff"],
                float(stored["full_logit_diff"]),
                int(stored["n_examples"]),
                ablation,
                key,
            )
    d_kl, d_ld, full_ld = compute_effects(model, graph, data, ablation)
    effects = EdgeEffects(d_kl, d_ld, full_ld, len(data), ablation, key)
    if cache:
        stored = {
            "d_kl": d_kl,
            "d_logit_diff": d_ld,
            "full_logit_diff": full_ld,
            "n_examples": len(data),
        }
        atomic_write(path, lambda f: torch.save(stored, f))
    return effects


def roc_auc(scores: Tensor, positive: Tensor) -> float:
    """Area under the ROC curve of `scores` ranking the `positive` items above the rest (ties
    count half): the Mann-Whitney statistic."""
    scores = scores.double()
    pos, neg = scores[positive], scores[~positive]
    if pos.numel() == 0 or neg.numel() == 0:
        return float("nan")
    ranks = _average_ranks(torch.cat([pos, neg]))
    rank_sum = ranks[: pos.numel()].sum()
    u = rank_sum - pos.numel() * (pos.numel() + 1) / 2
    return float(u / (pos.numel() * neg.numel()))


def _average_ranks(values: Tensor) -> Tensor:
    """1-based ranks, ties given their average rank."""
    order = torch.argsort(values, stable=True)
    sorted_values = values[order]
    ranks = torch.empty_like(values)
    ranks[order] = torch.arange(1, values.numel() + 1, dtype=values.dtype)
    unique, inverse, counts = torch.unique(sorted_values, return_inverse=True, return_counts=True)
    if unique.numel() < values.numel():
        sums = torch.zeros(unique.numel(), dtype=values.dtype).index_add_(0, inverse, ranks[order])
        ranks[order] = (sums / counts)[inverse]
    return ranks


def average_precision(scores: Tensor, positive: Tensor) -> float:
    """Average precision of `scores` ranking the `positive` items first: the mean, over the
    positives, of the precision at each one's rank (ties broken by index, deterministically)."""
    if not positive.any():
        return float("nan")
    order = torch.argsort(scores.double(), descending=True, stable=True)
    hits = positive[order].double()
    precision = hits.cumsum(0) / torch.arange(1, hits.numel() + 1, dtype=torch.double)
    return float((precision * hits).sum() / hits.sum())


def top_k(values: Tensor, k: int) -> Tensor:
    """[n] bool: the k largest `values` (ties by index)."""
    order = torch.argsort(values, descending=True, stable=True)
    mask = torch.zeros(values.numel(), dtype=torch.bool)
    mask[order[:k]] = True
    return mask
