"""The edge-masked forward: Edge Pruning's disentangled residual, written with TransformerBridge hooks.

Every receiver r reads its own copy of the residual stream:

    input_r = baseline_resid[group(r)] + sum_s m[s, r] * (y_s - y~_s)

where y_s are sender outputs in this forward pass, y~_s the sender outputs of the baseline run
(corrupted prompts, a mean, or zero; computed once, without grad) and baseline_resid the baseline
run's residual stream at r's hook. m = 1 on every edge reproduces the clean run, m = 0 the baseline
run. Edges outside the engine's `active` set are fixed to m = 0, and they cost nothing: masks,
sender deltas and matmuls exist only for active senders, receivers and (sender chunk, receiver
group) blocks that hold an active edge. That is what makes a restricted search (HAP) cheaper than
a search over the whole graph.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from functools import partial

import torch
from torch import Tensor

from hap.graph import Graph, ReceiverGroup, SenderGroup
from hap.metrics import at_position
from hap.tasks.base import TaskData


class Ablation(StrEnum):
    """What a removed edge carries instead of the sender's clean output."""

    CORRUPTED = "corrupted"  # the sender's output on the corrupted prompt
    MEAN = "mean"  # its mean over a reference set, per position
    ZERO = "zero"  # nothing (only the biases remain)


def sender_hook(group: SenderGroup) -> str:
    return {
        "input": "blocks.0.hook_resid_pre",
        "attn": f"blocks.{group.layer}.attn.hook_result",
        "mlp": f"blocks.{group.layer}.hook_mlp_out",
    }[group.kind]


def resid_hook(group: ReceiverGroup, n_layers: int) -> str:
    """The residual-stream hook whose value the group's receivers read in an unpatched run."""
    return {
        "attn": f"blocks.{group.layer}.hook_resid_pre",
        "mlp": f"blocks.{group.layer}.hook_resid_mid",
        "logits": f"blocks.{n_layers - 1}.hook_resid_post",
    }[group.kind]


def receiver_hooks(group: ReceiverGroup, n_layers: int) -> list[str]:
    """The hooks through which the group's receivers read their input: q, k and v inputs (each
    [batch, pos, n_heads, d_model], heads in order) for attention, one hook otherwise."""
    if group.kind == "attn":
        return [f"blocks.{group.layer}.hook_{x}_input" for x in "qkv"]
    if group.kind == "mlp":
        return [f"blocks.{group.layer}.hook_mlp_in"]
    return [resid_hook(group, n_layers)]


@dataclass(frozen=True)
class Baseline:
    """What masked-off edges carry, for one batch.

    senders: [batch, pos, n_senders, d_model] baseline sender outputs y~.
    resid: [n_receiver_groups, batch, pos, d_model] baseline residual at each receiver group.
    """

    senders: Tensor
    resid: Tensor


@torch.no_grad()
def run_activations(model, graph: Graph, tokens: Tensor) -> tuple[Tensor, Baseline]:
    """One plain forward returning (logits, its sender outputs and residuals as a `Baseline`)."""
    captured: dict[str, Tensor] = {}

    def keep(value: Tensor, hook, name: str) -> Tensor:
        captured[name] = value  # keyed by our name: the bridge reports aliases by canonical name
        return value

    names = {sender_hook(g) for g in graph.sender_groups}
    names |= {resid_hook(g, graph.n_layers) for g in graph.receiver_groups}
    logits = model.run_with_hooks(
        tokens, fwd_hooks=[(n, partial(keep, name=n)) for n in sorted(names)]
    )
    senders = []
    for g in graph.sender_groups:
        value = captured[sender_hook(g)]
        senders.append(value if g.kind == "attn" else value.unsqueeze(2))
    resid = [captured[resid_hook(g, graph.n_layers)] for g in graph.receiver_groups]
    return logits, Baseline(torch.cat(senders, 2), torch.stack(resid))


def _bias(graph: Graph, acts: Baseline) -> Tensor:
    """[n_groups, batch, pos, d]: what each group's residual holds beyond the sender outputs."""
    prefix = acts.senders.cumsum(2)
    upstream = torch.tensor([g.upstream - 1 for g in graph.receiver_groups], device=prefix.device)
    return acts.resid - prefix[:, :, upstream].permute(2, 0, 1, 3)


@torch.no_grad()
def fixed_references(
    model, graph: Graph, batch: TaskData, ablation: Ablation | str, reference: TaskData
) -> tuple[Tensor, Baseline]:
    """What stays fixed while a circuit is searched or scored on `batch`: the full model's logits
    at the metric positions ([n, vocab]) and the baseline removed edges carry (mean ablation
    averages over `reference`)."""
    full_logits = run_activations(model, graph, batch.clean)[0]
    baseline = compute_baseline(
        model,
        graph,
        batch.clean,
        batch.corrupted,
        ablation,
        reference=reference.clean,
        reference_position=reference.position,
    )
    return at_position(full_logits, batch.position), baseline


def compute_baseline(
    model,
    graph: Graph,
    clean: Tensor,
    corrupted: Tensor | None = None,
    ablation: Ablation | str = Ablation.CORRUPTED,
    reference: Tensor | None = None,
    reference_position: Tensor | None = None,
) -> Baseline:
    """The baseline for a batch of `clean` prompts.

    corrupted: [batch, pos] prompts for Ablation.CORRUPTED.
    reference, reference_position: prompts and their last real positions for Ablation.MEAN; the
        mean is taken per position over the reference prompts that reach that position.
    """
    ablation = Ablation(ablation)
    if ablation is Ablation.CORRUPTED:
        if corrupted is None:
            raise ValueError("corrupted ablation needs corrupted prompts")
        return run_activations(model, graph, corrupted)[1]
    batch, width = clean.shape
    if ablation is Ablation.ZERO:
        acts = run_activations(model, graph, clean)[1]
        return Baseline(torch.zeros_like(acts.senders), _bias(graph, acts))
    if reference is None or reference_position is None:
        raise ValueError("mean ablation needs reference prompts and their positions")
    if reference.shape[1] < width:
        raise ValueError(
            f"mean ablation needs reference prompts at least as long as the batch "
            f"({reference.shape[1]} < {width}): use a larger reference split"
        )
    acts = run_activations(model, graph, reference)[1]
    reach = torch.arange(reference.shape[1], device=reference.device)
    weight = (reach[None, :] <= reference_position[:, None]).to(acts.senders.dtype)  # [n, pos]
    count = weight.sum(0).clamp(min=1)  # [pos]
    senders = torch.einsum("npsd,np->psd", acts.senders, weight) / count[:, None, None]
    resid = torch.einsum("gnpd,np->gpd", acts.resid, weight) / count[None, :, None]
    return Baseline(
        senders[:width].unsqueeze(0).expand(batch, -1, -1, -1),
        resid[:, :width].unsqueeze(1).expand(-1, batch, -1, -1),
    )


@dataclass(frozen=True)
class _Block:
    """How one receiver group reads its active edges: the first `n_chunks` sender chunks, of
    which local sender `rows` (None: all of them), into the group's `slots` (None: all)."""

    n_chunks: int
    rows: Tensor | None
    matrix_rows: Tensor  # [rows, 1] local mask rows
    matrix_cols: Tensor  # [1, slots] local mask columns
    slots: Tensor | None


class EdgeMaskedForward:
    """Run `model` with a mask over the `active` edges of `graph`; every other edge carries the baseline.

    active: [n_active] edge indices (default: all edges). The mask passed to `hooks`/`__call__` has
    one value per active edge, in this order; it may require grad.
    """

    def __init__(self, model, graph: Graph, active: Tensor | None = None):
        self.model = model
        self.graph = graph
        device = next(model.parameters()).device
        active = torch.arange(graph.n_edges) if active is None else active.to("cpu")
        self.active = active.to(device)
        self.n_active = int(active.numel())
        senders = graph.edge_sender[active]
        receivers = graph.edge_receiver[active]

        # Active senders in forward order, one chunk per hook that writes them:
        # (group, index within the group, global sender index). Local mask rows follow this order.
        self.sender_chunks: list[tuple[SenderGroup, Tensor, Tensor]] = []
        local_sender = torch.full((graph.n_senders,), -1, dtype=torch.long)
        chunk_end: list[int] = []
        for g in graph.sender_groups:
            ids = torch.unique(senders[(senders >= g.first) & (senders < g.first + g.size)])
            if ids.numel():
                start = chunk_end[-1] if chunk_end else 0
                local_sender[ids] = torch.arange(start, start + ids.numel())
                self.sender_chunks.append((g, (ids - g.first).to(device), ids.to(device)))
                chunk_end.append(start + ids.numel())
        self.n_local_senders = chunk_end[-1] if chunk_end else 0
        # Per receiver group with an active edge: the matmul reads only the group's senders with an
        # active edge (rows) into its receivers with an active edge (slots). Where those cover
        # more than half of the upstream senders / the group, selecting them costs more than the
        # zero weights it saves, so the group is read densely (rows or slots None).
        local_receiver = torch.full((graph.n_receivers,), -1, dtype=torch.long)
        n_cols = 0
        self.receiver_blocks: dict[int, _Block] = {}
        for index, g in enumerate(graph.receiver_groups):
            inside = (receivers >= g.first) & (receivers < g.first + g.size)
            if not inside.any():
                continue
            rows = torch.unique(local_sender[senders[inside]])
            n_chunks = next(i + 1 for i, end in enumerate(chunk_end) if end > int(rows.max()))
            n_upstream = chunk_end[n_chunks - 1]
            sparse_rows = rows.numel() <= n_upstream // 2
            slots = torch.unique(receivers[inside]) - g.first
            sparse_slots = slots.numel() <= g.size // 2
            if not sparse_slots:
                slots = torch.arange(g.size)
            local_receiver[g.first + slots] = torch.arange(n_cols, n_cols + slots.numel())
            n_cols += slots.numel()
            matrix_rows = rows if sparse_rows else torch.arange(n_upstream)
            self.receiver_blocks[index] = _Block(
                n_chunks=n_chunks,
                rows=rows.to(device) if sparse_rows else None,
                matrix_rows=matrix_rows.to(device)[:, None],
                matrix_cols=local_receiver[g.first + slots].to(device)[None, :],
                slots=slots.to(device) if sparse_slots else None,
            )
        self.n_local_receivers = n_cols
        self.local_rows = local_sender[senders].to(device)
        self.local_cols = local_receiver[receivers].to(device)

    def local_mask(self, mask: Tensor) -> Tensor:
        """[n_active] -> [n_local_senders, n_local_receivers] (differentiable)."""
        dense = mask.new_zeros(self.n_local_senders, self.n_local_receivers)
        return dense.index_put((self.local_rows, self.local_cols), mask)

    def hooks(self, mask: Tensor, baseline: Baseline) -> list[tuple[str, object]]:
        """Forward hooks that implement `mask` over this batch's `baseline` (one forward's worth)."""
        graph, n_heads = self.graph, self.graph.n_heads
        matrix = self.local_mask(mask)
        deltas: list[Tensor] = []  # per sender chunk: [batch, pos, n_chunk, d_model]
        pending: dict[str, Tensor] = {}

        def receiver_input(index: int, size: int) -> Tensor:
            """[batch, pos, group size, d_model] inputs of the receivers in group `index`."""
            block = self.receiver_blocks[index]
            upstream = deltas[0] if block.n_chunks == 1 else torch.cat(deltas[: block.n_chunks], 2)
            if block.rows is not None:
                upstream = upstream.index_select(2, block.rows)
            weights = matrix[block.matrix_rows, block.matrix_cols]  # [rows, slots]
            contribution = torch.matmul(weights.T, upstream)  # [batch, pos, slots, d_model]
            fixed = baseline.resid[index].unsqueeze(2)
            if block.slots is None:
                return fixed + contribution
            return fixed.repeat(1, 1, size, 1).index_add(2, block.slots, contribution)

        def group_input(index: int, size: int) -> Tensor:
            if index in self.receiver_blocks:
                return receiver_input(index, size)
            return baseline.resid[index].unsqueeze(2).expand(-1, -1, size, -1)

        def record(value: Tensor, hook, kind: str, ids: Tensor, global_ids: Tensor) -> Tensor:
            own = value[:, :, ids] if kind == "attn" else value.unsqueeze(2)
            deltas.append(own - baseline.senders[:, :, global_ids])
            return value

        def attn_in(value: Tensor, hook, index: int) -> Tensor:
            full = group_input(index, 3 * n_heads)
            pending["k"], pending["v"] = (
                full[:, :, n_heads : 2 * n_heads],
                full[:, :, 2 * n_heads :],
            )
            return full[:, :, :n_heads]

        def single_in(value: Tensor, hook, index: int) -> Tensor:
            return group_input(index, 1)[:, :, 0]

        hooks: list[tuple[str, object]] = [
            (sender_hook(g), partial(record, kind=g.kind, ids=ids, global_ids=global_ids))
            for g, ids, global_ids in self.sender_chunks
        ]
        for index, g in enumerate(graph.receiver_groups):
            names = receiver_hooks(g, graph.n_layers)
            if g.kind == "attn":
                q, k, v = names
                hooks += [
                    (q, partial(attn_in, index=index)),
                    (k, lambda value, hook: pending.pop("k")),
                    (v, lambda value, hook: pending.pop("v")),
                ]
            else:
                hooks.append((names[0], partial(single_in, index=index)))
        return hooks

    def __call__(self, tokens: Tensor, mask: Tensor, baseline: Baseline) -> Tensor:
        """[batch, pos, vocab] logits of the masked model on `tokens`."""
        return self.model.run_with_hooks(tokens, fwd_hooks=self.hooks(mask, baseline))
