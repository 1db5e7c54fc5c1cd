"""What a removed edge carries, and the runs that fix it: the clean run's sender outputs and the
baseline (the corrupted prompts' outputs, their per-position mean over a reference set, or zero)
that the edge-masked forward (hap.engine.patching) mixes, computed once per batch without grad.

Hook names: each sender writes at its group's hook (`sender_hook`), each receiver group reads at
its own (`receiver_hooks`), and `resid_hook` names the residual stream a group reads.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from functools import partial

import torch
from torch import Tensor

from hap.engine.graph import Graph, ReceiverGroup, SenderGroup, post_norm_module
from hap.engine.metrics import at_position
from hap.errors import ConfigError
from hap.tasks.base import TaskData


class Ablation(StrEnum):
    """What a removed edge carries instead of the sender's clean output."""

    CORRUPTED = "corrupted"  # the sender's output on the corrupted prompt
    MEAN = "mean"  # its mean over a reference set, per position
    ZERO = "zero"  # nothing (only the biases remain)


def check_ablation(name: str) -> Ablation:
    """`name` as an Ablation, or a one-line ConfigError listing the valid ones."""
    try:
        return Ablation(name)
    except ValueError:
        valid = ", ".join(a.value for a in Ablation)
        raise ConfigError(f"ablation={name!r}: choose one of {valid}") from None


def sender_hook(group: SenderGroup) -> str:
    return {
        "input": "blocks.0.hook_resid_pre",
        "attn": f"blocks.{group.layer}.attn.hook_result",
        "mlp": f"blocks.{group.layer}.hook_mlp_out",
    }[group.kind]


def resid_hook(group: ReceiverGroup, n_layers: int, parallel: bool = False) -> str:
    """The residual-stream hook whose value the group's receivers read in an unpatched run (a
    parallel block's MLP reads the block's input)."""
    return {
        "attn": f"blocks.{group.layer}.hook_resid_pre",
        "mlp": f"blocks.{group.layer}.hook_resid_{'pre' if parallel else 'mid'}",
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

    senders: [n_senders, batch, pos, d_model] baseline sender outputs y~ (sender-major, the layout
        the engine's delta buffer and the attribution matmuls read).
    resid: [n_receiver_groups, batch, pos, d_model] baseline residual at each receiver group.
    attn_pre, attn_post: with a post-attention norm only, [n_layers, batch, pos, d_model]: each
        layer's summed head outputs before the norm (bias included), and that norm of them. A
        receiver reads resid + sum over layers of norm(attn_pre + its masked head deltas) -
        attn_post, so that an all-zeros mask reads `resid` exactly.
    """

    senders: Tensor
    resid: Tensor
    attn_pre: Tensor | None = None
    attn_post: Tensor | None = None


@torch.no_grad()
def run_activations(model, graph: Graph, tokens: Tensor) -> tuple[Tensor, Baseline]:
    """One plain forward returning (logits, its sender outputs and residuals as a `Baseline`)."""
    captured: dict[str, Tensor] = {}

    def keep(value: Tensor, hook, name: str) -> Tensor:
        captured[name] = value  # keyed by our name: the bridge reports aliases by canonical name
        return value

    names = {sender_hook(g) for g in graph.sender_groups}
    names |= {resid_hook(g, graph.n_layers, graph.parallel) for g in graph.receiver_groups}
    norms = [post_norm_hooks(layer) for layer in range(graph.n_layers)] if graph.post_norm else []
    names |= {name for pair in norms for name in pair}
    logits = model.run_with_hooks(
        tokens, fwd_hooks=[(n, partial(keep, name=n)) for n in sorted(names)]
    )
    senders = [sender_major(captured[sender_hook(g)], g.kind) for g in graph.sender_groups]
    resid = [captured[resid_hook(g, graph.n_layers, graph.parallel)] for g in graph.receiver_groups]
    acts = Baseline(torch.cat(senders, 0), torch.stack(resid))
    if norms:
        acts = Baseline(
            acts.senders,
            acts.resid,
            torch.stack([captured[pre] for pre, _ in norms]),
            torch.stack([captured[post] for _, post in norms]),
        )
    return logits, acts


def post_norm_hooks(layer: int) -> tuple[str, str]:
    """The hooks before and after layer `layer`'s post-attention norm."""
    return f"blocks.{layer}.ln1_post.hook_in", f"blocks.{layer}.ln1_post.hook_out"


def apply_post_norms(model, attn_pre: Tensor) -> Tensor:
    """[n_layers, ...] each layer's post-attention norm applied to its own slice."""
    return torch.stack([post_norm_module(model, layer)(x) for layer, x in enumerate(attn_pre)])


def sender_major(value: Tensor, kind: str) -> Tensor:
    """A sender hook's value as [n_group_senders, batch, pos, d_model] (a view)."""
    return value.permute(2, 0, 1, 3) if kind == "attn" else value.unsqueeze(0)


def _zero_baseline(model, graph: Graph, acts: Baseline) -> Baseline:
    """Zero ablation from a clean run: senders carry nothing, each group's residual holds only
    what lies beyond the sender outputs (biases). With post-attention norms, the heads' zero is
    taken before the norm: a layer's pre-norm sum keeps only its bias, which the norm still maps."""
    if not graph.post_norm:
        prefix = acts.senders.cumsum(0)
        upstream = torch.tensor(
            [g.upstream - 1 for g in graph.receiver_groups], device=prefix.device
        )
        return Baseline(torch.zeros_like(acts.senders), acts.resid - prefix[upstream])
    heads = torch.stack(
        [
            acts.senders[g.first : g.first + g.size].sum(0)
            for g in graph.sender_groups
            if g.kind == "attn"
        ]
    )
    bias = acts.attn_pre - heads  # [n_layers, batch, pos, d]
    bias_post = apply_post_norms(model, bias)
    resid = acts.resid.clone()
    for index, g in enumerate(graph.receiver_groups):
        for s in graph.sender_groups:
            if s.first >= g.upstream:
                continue
            if s.kind == "attn":
                resid[index] -= acts.attn_post[s.layer] - bias_post[s.layer]
            else:
                resid[index] -= acts.senders[s.first]
    return Baseline(torch.zeros_like(acts.senders), resid, bias, bias_post)


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
        return _zero_baseline(model, graph, run_activations(model, graph, clean)[1])
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

    def mean(value: Tensor) -> Tensor:  # [k, n, pos, d] -> [k, batch, width, d]
        averaged = torch.einsum("knpd,np->kpd", value, weight) / count[None, :, None]
        return averaged[:, :width].unsqueeze(1).expand(-1, batch, -1, -1)

    if acts.attn_pre is None:
        return Baseline(mean(acts.senders), mean(acts.resid))
    # Removed head edges carry the heads' means, summed and normed as a receiver norms its mix:
    # the residual a removed edge leaves holds norm(mean pre-norm sum), not the mean of the norms.
    attn_pre = mean(acts.attn_pre)
    attn_post = apply_post_norms(model, attn_pre)
    shift = attn_post - mean(acts.attn_post)
    resid = mean(acts.resid).clone()
    for index, g in enumerate(graph.receiver_groups):
        layers = upstream_attn_layers(graph, g)
        if layers:
            resid[index] += shift[layers].sum(0)
    return Baseline(mean(acts.senders), resid, attn_pre, attn_post)


def upstream_attn_layers(graph: Graph, group: ReceiverGroup) -> list[int]:
    """The layers whose heads send to `group`'s receivers."""
    return [s.layer for s in graph.sender_groups if s.kind == "attn" and s.first < group.upstream]
