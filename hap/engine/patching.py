"""The edge-masked forward: Edge Pruning's disentangled residual, written with TransformerBridge hooks.

Every receiver r reads its own copy of the residual stream:

    input_r = baseline_resid[group(r)] + sum_s m[s, r] * (y_s - y~_s)

where y_s are sender outputs in this forward pass, y~_s the sender outputs of the baseline run
(corrupted prompts, a mean, or zero; computed once, without grad) and baseline_resid the baseline
run's residual stream at r's hook. m = 1 on every edge reproduces the clean run, m = 0 the baseline
run. Edges outside the engine's `active` set are fixed to m = 0, and they cost nothing: masks,
sender deltas and matmuls exist only for active senders, receivers and (sender, receiver group)
pairs that hold an active edge. That is what makes a restricted search (HAP) cheaper than a search
over the whole graph.

Cost and memory. The deltas y_s - y~_s of one forward live in one sender-major buffer
[n_senders, batch * pos * d_model], written once per sender as the forward reaches it; a receiver
group's inputs are one matmul over a window of that buffer (or a gather of the few rows it reads),
and nothing upstream is copied per group. Autograd would keep one copy of the upstream deltas per
group (memory growing with the square of the depth), so the mixing has a hand-written backward
(`_Write` / `_Read`): each read adds W @ grad into a gradient buffer of the same shape, and each
write hands its rows back to its sender. The mixing's memory is two buffers of
n_active_senders x batch x pos x d_model floats, linear in depth; the bridge's own activations
come on top.

Post-attention norms (Gemma-2/3). A head's output is taken before its layer's post-attention
norm, and every receiver re-applies that norm to its own mix of the layer's heads:

    input_r = baseline_resid[group(r)] + sum_{s linear} m[s, r] (y_s - y~_s)
              + sum_l [norm_l(pre~_l + sum_{h in l} m[h, r] (y_h - y~_h)) - norm_l(pre~_l)]

where pre~_l is the baseline's pre-norm sum of layer l (bias included). All-ones reproduces the
clean run, all-zeros the baseline, and one removed edge exactly the patch of that head's output in
that receiver's copy of the layer. The linear senders (input, MLPs) ride the stream as above; the
heads' deltas are kept per layer, and each (receiver group, upstream layer) pair costs one small
matmul and one norm over the group's active receivers, recomputed in the backward
(checkpointing) so that memory stays linear in depth.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial

import torch
from torch import Tensor
from torch.utils.checkpoint import checkpoint

from hap.engine.ablation import Baseline, receiver_hooks, sender_hook, sender_major
from hap.engine.graph import Graph, SenderGroup, post_norm_module


class _Stream:
    """The sender deltas of one masked forward and, once a backward starts, their gradients.

    deltas: [n_rows, batch * pos * d_model], rows in forward order (one per active sender).
    grad_rows: per row, whether its sender's output requires grad (only those rows collect
    gradients in the backward). The two buffers come from the engine's `spare` list and go back
    to it when the stream is freed (with the autograd graph that holds it): a search step then
    reuses the last step's memory instead of faulting in fresh pages, hundreds of MB per step at
    GPT-2-small size on a CPU.

    The spare list holds flat storage, and a stream takes a prefix of any spare as large as it
    needs: a task's batches are padded to their own longest prompt, so consecutive steps differ
    in width (20 and 21 positions on IOI), and exact-shape reuse would miss on every other step
    and allocate two fresh buffers while the list still held the two old ones (+650 MB at
    GPT-2-small size, batch 32). When no spare is large enough, the list is emptied before the
    fresh buffer is allocated, so that the smaller buffers are not held beside it."""

    def __init__(self, n_rows: int, spare: list[Tensor]):
        self.n_rows = n_rows
        self.spare = spare
        self.deltas: Tensor | None = None
        self.grads: Tensor | None = None
        self.grad_rows = torch.zeros(n_rows, dtype=torch.bool)
        self._storage: list[Tensor] = []  # the flat tensors behind deltas and grads

    def _take(self, like: Tensor, shape: tuple[int, int]) -> Tensor:
        """A [rows, width] buffer: a prefix of the smallest spare that holds it, else a fresh
        one (after the spare list is emptied)."""
        numel = shape[0] * shape[1]
        fits = [
            i
            for i, flat in enumerate(self.spare)
            if flat.numel() >= numel and flat.dtype == like.dtype and flat.device == like.device
        ]
        if fits:
            flat = self.spare.pop(min(fits, key=lambda i: self.spare[i].numel()))
        else:
            self.spare.clear()
            flat = like.new_empty(numel)
        self._storage.append(flat)
        return flat[:numel].view(shape)

    def buffer(self, like: Tensor, width: int) -> Tensor:
        if self.deltas is None:
            self.deltas = self._take(like, (self.n_rows, width))
        return self.deltas

    def grad_buffer(self) -> Tensor:
        if self.grads is None:
            self.grads = self._take(self.deltas, tuple(self.deltas.shape)).zero_()
        return self.grads

    def __del__(self) -> None:
        for flat in self._storage:
            if len(self.spare) < 2:
                self.spare.append(flat)


class _Write(torch.autograd.Function):
    """Write one sender chunk's deltas (value - baseline) into the stream's rows
    [start, start + n); return a token that every later read takes as an input, so autograd
    runs all reads' backwards (which fill the rows' gradients) before this one's."""

    @staticmethod
    def forward(ctx, value, base, stream, start, kind, ids):
        own = sender_major(value, kind)
        if ids is not None:
            own = own.index_select(0, ids)
        n, batch, pos, d_model = own.shape
        rows = stream.buffer(value, batch * pos * d_model)[start : start + n]
        torch.sub(own, base, out=rows.view(n, batch, pos, d_model))
        stream.grad_rows[start : start + n] = ctx.needs_input_grad[0]
        ctx.stream, ctx.start, ctx.kind, ctx.ids = stream, start, kind, ids
        ctx.shape = value.shape
        ctx.own_shape = (n, batch, pos, d_model)
        return value.new_zeros(())

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, _token):
        # Each backward drops its node's hold on the stream: once the last one has run, the
        # stream's buffers go back to the engine's spare list (Stream.__del__) for the next step,
        # even while the caller still holds the loss (and so these nodes).
        stream, ctx.stream = ctx.stream, None
        if stream.grads is None:
            return None, None, None, None, None, None
        n = ctx.own_shape[0]
        rows = stream.grads[ctx.start : ctx.start + n].view(ctx.own_shape)
        if ctx.kind != "attn":
            return rows[0], None, None, None, None, None
        if ctx.ids is None:
            return rows.permute(1, 2, 0, 3), None, None, None, None, None
        grad = rows.new_zeros(ctx.shape)
        grad.permute(2, 0, 1, 3).index_copy_(0, ctx.ids, rows)
        return grad, None, None, None, None, None


def _grad_selection(flags: Tensor) -> slice | Tensor | None:
    """Positions where `flags` is set: a slice when they are contiguous, else an index tensor."""
    where = flags.nonzero().squeeze(1)
    if where.numel() == 0:
        return None
    first, last = int(where[0]), int(where[-1])
    if last - first + 1 == where.numel():
        return slice(first, last + 1)
    return where


class _Read(torch.autograd.Function):
    """One plan's mixing: weights.T @ deltas[plan's rows] -> [columns, batch * pos * d_model],
    returned split by the plan's sections (the q, k, v parts of its group, then each carry).
    Backward: the weights' gradient, and weights @ grad added into the rows whose senders
    need it."""

    @staticmethod
    def forward(ctx, weights, stream, plan, *tokens):
        x = _rows(stream.deltas, plan)
        out = torch.mm(weights.t(), x)
        if plan.rows is None:
            flags = stream.grad_rows[plan.lo : plan.hi]
        else:
            flags = stream.grad_rows[plan.rows_cpu]
        selection = _grad_selection(flags)
        if isinstance(selection, Tensor):
            selection = selection.to(weights.device)
        ctx.stream, ctx.plan, ctx.selection = stream, plan, selection
        ctx.n_tokens = len(tokens)
        ctx.save_for_backward(weights)
        return tuple(out.split(plan.sections, 0))

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, *grads):
        (weights,) = ctx.saved_tensors
        stream, plan, selection = ctx.stream, ctx.plan, ctx.selection
        ctx.stream = None  # see _Write.backward
        grad_out = grads[0] if len(grads) == 1 else torch.cat(grads, 0)
        grad_weights = None
        if ctx.needs_input_grad[0]:
            grad_weights = torch.mm(_rows(stream.deltas, plan), grad_out.t())
        if selection is not None:
            store = stream.grad_buffer()
            if plan.rows is not None:  # a gather: few rows by construction
                store.index_add_(0, plan.rows[selection], torch.mm(weights[selection], grad_out))
            elif isinstance(selection, slice):
                rows = slice(plan.lo + selection.start, plan.lo + selection.stop)
                store[rows].addmm_(weights[selection], grad_out)
            else:  # scattered rows of a window: add in place over the window, zero elsewhere
                keep = torch.zeros(weights.shape[0], 1, dtype=weights.dtype, device=weights.device)
                keep[selection] = 1
                store[plan.lo : plan.hi].addmm_(weights * keep, grad_out)
        token = grad_out.new_zeros(())
        return (grad_weights, None, None) + (token,) * ctx.n_tokens


def _mixed_norm(weights: Tensor, deltas: Tensor, pre: Tensor, norm) -> Tensor:
    """[columns, batch, pos, d]: a layer's post-attention norm of each receiver's own mix,
    pre + sum_h weights[h, c] * deltas[h] (weights [heads, columns], deltas [heads, b, p, d])."""
    mix = torch.mm(weights.t(), deltas.flatten(1)).view(weights.shape[1], *pre.shape) + pre
    return norm(mix)


def _sections(parts: tuple[_Part | None, ...]) -> list[int]:
    """How many active columns each part of a group holds."""
    return [0 if p is None else p.size if p.slots is None else int(p.slots.numel()) for p in parts]


def _rows(deltas: Tensor, plan: _Plan) -> Tensor:
    """The plan's rows of the stream: a window read in place, or a gather."""
    return deltas[plan.lo : plan.hi] if plan.rows is None else deltas.index_select(0, plan.rows)


def carried_groups(graph: Graph, index: int) -> list[int]:
    """The single-receiver groups whose share of the rows written before attention group
    `index` rides on that group's matmul (see _Plan): its layer's MLP and, at the last layer,
    the logits. The engine's plans and the attribution scores both follow this rule."""
    last = graph.receiver_groups[index].layer == graph.n_layers - 1
    return [index + 1] + ([len(graph.receiver_groups) - 1] if last else [])


@dataclass(frozen=True)
class _Part:
    """One hook's receivers within a group (the q, k or v heads; or the single receiver): its
    `size` and the `slots` with an active in-edge (None: all of them)."""

    size: int
    slots: Tensor | None


@dataclass(frozen=True)
class _Plan:
    """One matmul over the stream, made when receiver group `at`'s hook fires: stream rows (the
    window [lo, hi) read in place, or the gathered `rows`) into columns: the active slots of
    group `at` (per part; a part None has none), then one column per `carry` group. Rows of a
    window outside the plan's own have zero weight in every one of its columns.

    Carrying: an MLP reads every sender its layer's attention reads plus that layer's heads, and
    the logits read everything. As single-column reads (matrix-vector products) they would stream
    the whole prefix again for one output row, so the attention read of the same layer computes
    their share of the rows already written, and their own reads cover only the rows written
    since (the layer's heads; for the logits, the last layer's heads and MLP)."""

    at: int
    lo: int
    hi: int
    rows: Tensor | None
    rows_cpu: Tensor | None
    matrix_rows: Tensor  # [rows, 1] local mask rows
    matrix_cols: Tensor  # [1, columns] local mask columns
    parts: tuple[_Part | None, ...]
    carry: tuple[int, ...]
    sections: tuple[int, ...]  # how many output columns each part, then each carry, takes


class EdgeMaskedForward:
    """Run `model` with a mask over the `active` edges of `graph`; every other edge carries the baseline.

    active: [n_active] edge indices (default: all edges). The mask passed to `hooks`/`__call__` has
    one value per active edge, in this order; it may require grad.
    """

    def __init__(self, model, graph: Graph, active: Tensor | None = None):
        self.model = model
        self.graph = graph
        self._spare: list[Tensor] = []  # buffers of freed streams, for the next forward
        device = next(model.parameters()).device
        active = torch.arange(graph.n_edges) if active is None else active.to("cpu")
        self.active = active.to(device)
        self.n_active = int(active.numel())
        senders = graph.edge_sender[active]
        receivers = graph.edge_receiver[active]

        # Active senders in forward order, one chunk per hook that writes them: (group, first
        # local row, local head ids or None for the whole group, global sender ids). The stream
        # holds the linear senders (every one, unless the model has post-attention norms); the
        # normed heads' local rows (mask rows only) come after them, per layer in `norm_chunks`.
        self.sender_chunks: list[tuple[SenderGroup, int, Tensor | None, Tensor]] = []
        self.norm_chunks: dict[int, tuple[SenderGroup, int, Tensor | None, Tensor]] = {}
        local_sender = torch.full((graph.n_senders,), -1, dtype=torch.long)
        n_rows = 0
        for normed in (False, True):
            for g in graph.sender_groups:
                if (graph.post_norm and g.kind == "attn") != normed:
                    continue
                ids = torch.unique(senders[(senders >= g.first) & (senders < g.first + g.size)])
                if ids.numel():
                    local_sender[ids] = torch.arange(n_rows, n_rows + ids.numel())
                    whole = ids.numel() == g.size
                    local_ids = None if whole else (ids - g.first).to(device)
                    chunk = (g, n_rows, local_ids, ids.to(device))
                    if normed:
                        self.norm_chunks[g.layer] = chunk
                    else:
                        self.sender_chunks.append(chunk)
                    n_rows += ids.numel()
            if not normed:
                self.n_stream_rows = n_rows
        self.n_local_senders = n_rows
        n_stream = self.n_stream_rows
        self._norms = (
            [post_norm_module(model, layer) for layer in range(graph.n_layers)]
            if graph.post_norm
            else []
        )

        # Per receiver group with an active edge: its rows (senders with an active edge into it)
        # and active slots; one local mask column per active receiver, in forward order.
        # Post-attention norms: per group, the upstream layers with an active head edge into it.
        rows_of: dict[int, Tensor] = {}
        slots_of: dict[int, Tensor] = {}
        self.norm_layers: dict[int, list[int]] = {}
        local_receiver = torch.full((graph.n_receivers,), -1, dtype=torch.long)
        n_cols = 0
        for index, g in enumerate(graph.receiver_groups):
            inside = (receivers >= g.first) & (receivers < g.first + g.size)
            if inside.any():
                rows = torch.unique(local_sender[senders[inside]])
                if (linear := rows[rows < n_stream]).numel():
                    rows_of[index] = linear
                layers = [
                    layer
                    for layer, (_, first, _, ids) in self.norm_chunks.items()
                    if ((rows >= first) & (rows < first + ids.numel())).any()
                ]
                if layers:
                    self.norm_layers[index] = layers
                slots_of[index] = torch.unique(receivers[inside]) - g.first
                local_receiver[g.first + slots_of[index]] = torch.arange(
                    n_cols, n_cols + slots_of[index].numel()
                )
                n_cols += slots_of[index].numel()
        self.n_local_receivers = n_cols
        self.local_rows = local_sender[senders].to(device)
        self.local_cols = local_receiver[receivers].to(device)
        # Each group's own active columns and their split into parts (q, k, v; or one).
        self.own_cols: dict[int, Tensor] = {}
        self.own_parts: dict[int, tuple[_Part | None, ...]] = {}
        for index, g in enumerate(graph.receiver_groups):
            if index not in slots_of:
                continue
            self.own_cols[index] = local_receiver[g.first + slots_of[index]].to(device)
            self.own_parts[index] = (
                tuple(self._part(slots_of[index], p, graph.n_heads, device) for p in range(3))
                if g.kind == "attn"
                else (_Part(1, None),)
            )

        # One plan per hook that reads (see _Plan for the carrying of MLP and logits columns).
        groups = graph.receiver_groups
        remaining = dict(rows_of)
        self.plans: dict[int, _Plan] = {}
        for index, g in enumerate(groups):
            columns = [local_receiver[g.first + slots_of[index]]] if index in slots_of else []
            carry: list[int] = []
            if g.kind == "attn":
                before = local_sender[: g.upstream]
                written = int(((before >= 0) & (before < n_stream)).sum())
                rows = [rows_of.get(index, torch.zeros(0, dtype=torch.long))]
                for j in carried_groups(graph, index):
                    if j in rows_of and (early := rows_of[j][rows_of[j] < written]).numel():
                        carry.append(j)
                        rows.append(early)
                        remaining[j] = rows_of[j][rows_of[j] >= written]
                        columns.append(local_receiver[groups[j].first : groups[j].first + 1])
                read = torch.unique(torch.cat(rows))
                parts = tuple(
                    self._part(slots_of.get(index), p, graph.n_heads, device) for p in range(3)
                )
            else:
                read = remaining.get(index, torch.zeros(0, dtype=torch.long))
                parts = (_Part(1, None),)
            if read.numel() == 0:
                continue
            lo, hi = int(read.min()), int(read.max()) + 1
            dense = read.numel() * 3 > hi - lo  # a gather writes each row once more than it reads
            sections = _sections(parts)
            self.plans[index] = _Plan(
                at=index,
                lo=lo,
                hi=hi,
                rows=None if dense else read.to(device),
                rows_cpu=None if dense else read,
                matrix_rows=(torch.arange(lo, hi) if dense else read).to(device)[:, None],
                matrix_cols=torch.cat(columns).to(device)[None, :],
                parts=parts,
                carry=tuple(carry),
                sections=tuple(int(n) for n in sections) + (1,) * len(carry),
            )

    @staticmethod
    def _part(slots: Tensor | None, part: int, size: int, device) -> _Part | None:
        """The active slots of the q (0), k (1) or v (2) heads of an attention group."""
        if slots is None:
            return None
        mine = slots[(slots >= part * size) & (slots < (part + 1) * size)] - part * size
        if mine.numel() == 0:
            return None
        return _Part(size, None if mine.numel() == size else mine.to(device))

    def local_mask(self, mask: Tensor) -> Tensor:
        """[n_active] -> [n_local_senders, n_local_receivers] (differentiable)."""
        dense = mask.new_zeros(self.n_local_senders, self.n_local_receivers)
        return dense.index_put((self.local_rows, self.local_cols), mask)

    def hooks(self, mask: Tensor, baseline: Baseline) -> list[tuple[str, object]]:
        """Forward hooks that implement `mask` over this batch's `baseline` (one forward's worth)."""
        graph, n_heads = self.graph, self.graph.n_heads
        matrix = self.local_mask(mask).to(baseline.resid.dtype)  # bf16 models mix in bf16
        stream = _Stream(self.n_stream_rows, self._spare)
        tokens: list[Tensor] = []  # not on the stream: a token's grad_fn holds the stream
        carried: dict[int, list[Tensor]] = {}  # group -> [1, batch * pos * d_model] partial sums
        pending: dict[str, Tensor] = {}
        normed: dict[int, Tensor] = {}  # layer -> [active heads, batch, pos, d] head deltas

        def read(plan: _Plan) -> tuple[Tensor, ...]:
            weights = matrix[plan.matrix_rows, plan.matrix_cols]
            outputs = _Read.apply(weights, stream, plan, *tokens)
            own = len(plan.parts)
            for j, out in zip(plan.carry, outputs[own:]):
                carried.setdefault(j, []).append(out)
            return outputs[:own]

        def base_of(group: SenderGroup, ids, global_ids) -> Tensor:
            if ids is None:
                return baseline.senders[group.first : group.first + group.size]
            return baseline.senders.index_select(0, global_ids)

        def record(value: Tensor, hook, group: SenderGroup, start: int, ids, global_ids) -> Tensor:
            base = base_of(group, ids, global_ids)
            tokens.append(_Write.apply(value, base, stream, start, group.kind, ids))
            return value

        def record_normed(value: Tensor, hook, group: SenderGroup, ids, global_ids) -> Tensor:
            own = sender_major(value, "attn")
            if ids is not None:
                own = own.index_select(0, ids)
            normed[group.layer] = own - base_of(group, ids, global_ids)
            return value

        def norm_terms(index: int) -> list[Tensor] | None:
            """Per part of group `index`, [columns, batch * pos * d] of its post-norm terms."""
            layers = self.norm_layers.get(index)
            if not layers:
                return None
            cols, total = self.own_cols[index], None
            for layer in layers:
                _, first, _, ids = self.norm_chunks[layer]
                weights = matrix[first : first + ids.numel()].index_select(1, cols)
                args = (weights, normed[layer], baseline.attn_pre[layer])
                norm = self._norms[layer]
                if torch.is_grad_enabled() and (weights.requires_grad or args[1].requires_grad):
                    term = checkpoint(_mixed_norm, *args, norm, use_reentrant=False)
                else:
                    term = _mixed_norm(*args, norm)
                term = term - baseline.attn_post[layer]
                total = term if total is None else total + term
            return list(total.flatten(1).split(_sections(self.own_parts[index]), 0))

        def attn_in(value: Tensor, hook, index: int) -> Tensor:
            fixed = baseline.resid[index]  # [batch, pos, d_model]
            plan = self.plans.get(index)
            linear = read(plan) if plan is not None else None
            extra = norm_terms(index)
            inputs = []
            for i, part in enumerate(self.own_parts.get(index, (None,) * 3)):
                if part is None:
                    inputs.append(fixed.unsqueeze(2).expand(-1, -1, n_heads, -1))
                    continue
                out = linear[i] if linear is not None else None
                if extra is not None:
                    out = extra[i] if out is None else out + extra[i]
                shaped = out.view(out.shape[0], *fixed.shape)
                if part.slots is None:
                    inputs.append((shaped + fixed).permute(1, 2, 0, 3))
                else:
                    full = fixed.unsqueeze(0).expand(n_heads, -1, -1, -1)
                    inputs.append(full.index_add(0, part.slots, shaped).permute(1, 2, 0, 3))
            q, pending["k"], pending["v"] = inputs
            return q

        def single_in(value: Tensor, hook, index: int) -> Tensor:
            fixed = baseline.resid[index]
            plan = self.plans.get(index)
            terms = carried.pop(index, []) + (list(read(plan)) if plan is not None else [])
            terms += norm_terms(index) or []
            if not terms:
                return fixed
            total = terms[0]
            for term in terms[1:]:
                total = total + term
            return fixed + total.view(fixed.shape)

        hooks: list[tuple[str, object]] = [
            (sender_hook(g), partial(record, group=g, start=start, ids=ids, global_ids=global_ids))
            for g, start, ids, global_ids in self.sender_chunks
        ]
        hooks += [
            (sender_hook(g), partial(record_normed, group=g, ids=ids, global_ids=global_ids))
            for g, _, ids, global_ids in self.norm_chunks.values()
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
