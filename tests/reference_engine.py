"""A deliberately plain edge-masked forward: the reference the fast engine is tested against.

Every receiver group's input is computed from scratch, as the formula reads, over every upstream
sender and the full [n_senders, n_receivers] mask, with autograd doing all the backward work: no
active-set bookkeeping, no shared buffers, no hand-written gradients.
"""

from __future__ import annotations

import torch
from torch import Tensor

from hap.engine.ablation import Baseline, receiver_hooks, sender_hook, sender_major
from hap.engine.graph import Graph, post_norm_module


def reference_logits(model, graph: Graph, tokens: Tensor, mask: Tensor, baseline: Baseline):
    """[batch, pos, vocab] logits with `mask` ([n_edges], any values) over every edge."""
    dense = graph.dense(mask)
    outputs: list[Tensor] = []
    pending: dict[str, Tensor] = {}

    def record(value: Tensor, hook, kind: str) -> Tensor:
        outputs.append(sender_major(value, kind))
        return value

    def inputs(index: int) -> Tensor:
        g = graph.receiver_groups[index]
        delta = torch.cat(outputs)[: g.upstream] - baseline.senders[: g.upstream]
        weights = dense[: g.upstream, g.first : g.first + g.size]
        if not graph.post_norm:
            mixed = torch.einsum("sr,sbpd->bprd", weights, delta)
            return baseline.resid[index].unsqueeze(2) + mixed
        # Post-attention norms: linear senders as above; each upstream layer's heads through
        # that layer's norm, applied to each receiver's own mix (the formula in patching.py).
        mixed = baseline.resid[index].unsqueeze(2).expand(-1, -1, g.size, -1)
        for s in graph.sender_groups:
            if s.first >= g.upstream:
                continue
            rows = slice(s.first, s.first + s.size)
            if s.kind != "attn":
                mixed = mixed + torch.einsum("sr,sbpd->bprd", weights[rows], delta[rows])
                continue
            mix = baseline.attn_pre[s.layer].unsqueeze(2) + torch.einsum(
                "sr,sbpd->bprd", weights[rows], delta[rows]
            )
            norm = post_norm_module(model, s.layer)
            mixed = mixed + norm(mix) - baseline.attn_post[s.layer].unsqueeze(2)
        return mixed

    def attn_in(value: Tensor, hook, index: int) -> Tensor:
        x = inputs(index)
        n = graph.n_heads
        pending["k"], pending["v"] = x[:, :, n : 2 * n], x[:, :, 2 * n :]
        return x[:, :, :n]

    hooks = [
        (sender_hook(g), lambda value, hook, kind=g.kind: record(value, hook, kind))
        for g in graph.sender_groups
    ]
    for index, g in enumerate(graph.receiver_groups):
        names = receiver_hooks(g, graph.n_layers)
        if g.kind == "attn":
            hooks += [
                (names[0], lambda value, hook, index=index: attn_in(value, hook, index)),
                (names[1], lambda value, hook: pending.pop("k")),
                (names[2], lambda value, hook: pending.pop("v")),
            ]
        else:
            hooks.append((names[0], lambda value, hook, index=index: inputs(index)[:, :, 0]))
    return model.run_with_hooks(tokens, fwd_hooks=hooks)
