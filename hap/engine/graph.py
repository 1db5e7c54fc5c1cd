"""The computation graph: sender outputs -> receiver inputs, as dense index tensors.

Convention (EAP-IG / MIB): one `input` node (token + position embeddings), heads `a{L}.h{H}`, MLPs
`m{L}`, and `logits`. Senders, in forward order: input, then per layer its heads and its MLP.
Receivers, in forward order: per layer the q, k and v inputs of each head (`a{L}.h{H}<q>` ...) and
the MLP input, then logits. An edge joins every sender to every receiver downstream of it; an
attention layer feeds the MLP of the same layer (GPT-2's sequential block). GPT-2 small has 32,491
edges under this convention. In a parallel block (GPT-NeoX / Pythia, GPT-J, Phi) the MLP reads the
block's input, as the attention does, so a layer's heads do not send to its own MLP (`parallel`).

Post-attention norms (Gemma-2/3, OLMo-2: `post_norm`) keep the edges; a head's output is taken
*before* the norm that its layer applies to the summed heads, and each receiver re-applies that norm
to its own mix of the layer's head outputs (hap.engine.patching). The graph only records the flag.

Grouped-query attention follows MIB and TransformerLens's `ungroup_grouped_query_attention`: k and
v receivers per *query* head (the loader rewrites the shared K/V weights per query head, so each
query head's k/v input carries its own masked mix, exactly). With L layers and H query heads,

    senders   = 1 + L (H + 1)
    receivers = L (3H + 1) + 1
    edges     = sum_l [3H (1 + l (H + 1)) + 1 + l (H + 1) + H] + 1 + L (H + 1)
              = L (3H + 1) (1 + (L - 1)(H + 1) / 2) + L H + 1 + L (H + 1)

(GPT-2 small 32,491; Qwen2.5-0.5B 179,749; SmolLM2-135M 123,211). A parallel block drops the
L H head -> own-MLP edges (Pythia-70M's shape, 6 layers x 8 heads: 3,580 edges; 3,628 if it were
sequential). `edge_count` also gives the grouped convention's count (k and v per KV head), which
the engine does not offer.

A circuit is a boolean vector over edges; `edge_sender` / `edge_receiver` index the dense
[n_senders, n_receivers] view used by the patching engine and the attribution scores.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property, partial

import torch
from torch import Tensor

from hap.errors import UserError

QKV = ("q", "k", "v")


@dataclass(frozen=True)
class ReceiverGroup:
    """Receivers that read the same residual stream through one hook point.

    kind: "attn" (3 * n_heads receivers, q heads then k then v), "mlp" or "logits" (one each).
    first: index of the group's first receiver. upstream: how many senders precede it.
    """

    kind: str
    layer: int
    first: int
    size: int
    upstream: int


@dataclass(frozen=True)
class SenderGroup:
    """Senders written by one hook point: the input, one layer's heads, or one layer's MLP."""

    kind: str
    layer: int
    first: int
    size: int


@dataclass(frozen=True)
class Graph:
    """The edge graph of a transformer with `n_layers` layers of `n_heads` heads each. `d_model`
    is recorded where known (from a model, or a circuit file's config) so that circuit files name
    the full shape EAP-IG and MIB write; it does not change the edges."""

    n_layers: int
    n_heads: int
    d_model: int | None = field(default=None, compare=False)
    parallel: bool = False
    post_norm: bool = field(default=False, compare=False)
    sender_groups: tuple[SenderGroup, ...] = field(init=False)
    receiver_groups: tuple[ReceiverGroup, ...] = field(init=False)

    def __post_init__(self) -> None:
        senders = [SenderGroup("input", -1, 0, 1)]
        receivers = []
        n_s, n_r = 1, 0
        for layer in range(self.n_layers):
            receivers.append(ReceiverGroup("attn", layer, n_r, 3 * self.n_heads, n_s))
            n_r += 3 * self.n_heads
            block_input = n_s
            senders.append(SenderGroup("attn", layer, n_s, self.n_heads))
            n_s += self.n_heads
            mlp_reads = block_input if self.parallel else n_s
            receivers.append(ReceiverGroup("mlp", layer, n_r, 1, mlp_reads))
            n_r += 1
            senders.append(SenderGroup("mlp", layer, n_s, 1))
            n_s += 1
        receivers.append(ReceiverGroup("logits", self.n_layers, n_r, 1, n_s))
        object.__setattr__(self, "sender_groups", tuple(senders))
        object.__setattr__(self, "receiver_groups", tuple(receivers))

    @classmethod
    def from_model(cls, model) -> Graph:
        """The graph of a loaded bridge, after checking that the engine patches it exactly
        (`check_patchable`)."""
        check_patchable(model)
        return cls(
            model.cfg.n_layers,
            model.cfg.n_heads,
            int(model.cfg.d_model),
            parallel=is_parallel(model),
            post_norm=has_post_norm(model),
        )

    def shape(self) -> str:
        """The graph's shape in words, for messages that compare two graphs."""
        d_model = f", d_model {self.d_model}" if self.d_model else ""
        block = ", parallel attention and MLP" if self.parallel else ""
        return (
            f"{self.n_layers} layers x {self.n_heads} heads{d_model}{block} "
            f"({self.n_edges:,} edges)"
        )

    @property
    def n_senders(self) -> int:
        return 1 + self.n_layers * (self.n_heads + 1)

    @property
    def n_receivers(self) -> int:
        return self.n_layers * (3 * self.n_heads + 1) + 1

    @cached_property
    def sender_names(self) -> list[str]:
        names = ["input"]
        for layer in range(self.n_layers):
            names += [f"a{layer}.h{h}" for h in range(self.n_heads)] + [f"m{layer}"]
        return names

    @cached_property
    def receiver_names(self) -> list[str]:
        names = []
        for layer in range(self.n_layers):
            names += [f"a{layer}.h{h}<{x}>" for x in QKV for h in range(self.n_heads)]
            names.append(f"m{layer}")
        return names + ["logits"]

    @cached_property
    def receiver_node(self) -> Tensor:
        """[n_receivers] the sender index of the node each receiver feeds (-1 for logits)."""
        node = torch.full((self.n_receivers,), -1, dtype=torch.long)
        for g in self.receiver_groups:
            if g.kind == "attn":
                heads = torch.arange(self.n_heads).repeat(3)
                node[g.first : g.first + g.size] = g.upstream + heads
            elif g.kind == "mlp":
                node[g.first] = g.upstream
        return node

    @cached_property
    def valid(self) -> Tensor:
        """[n_senders, n_receivers] bool: sender s is upstream of receiver r."""
        upstream = torch.empty(self.n_receivers, dtype=torch.long)
        for g in self.receiver_groups:
            upstream[g.first : g.first + g.size] = g.upstream
        return torch.arange(self.n_senders)[:, None] < upstream[None, :]

    @cached_property
    def _edges(self) -> tuple[Tensor, Tensor]:
        s, r = self.valid.nonzero(as_tuple=True)
        return s, r

    @property
    def edge_sender(self) -> Tensor:
        """[n_edges] sender index of each edge (edges are ordered sender-major)."""
        return self._edges[0]

    @property
    def edge_receiver(self) -> Tensor:
        """[n_edges] receiver index of each edge."""
        return self._edges[1]

    @property
    def n_edges(self) -> int:
        return int(self._edges[0].numel())

    def edge_names(self) -> list[str]:
        s, r = self._edges
        return [f"{self.sender_names[i]}->{self.receiver_names[j]}" for i, j in zip(s, r)]

    @cached_property
    def edge_index(self) -> dict[str, int]:
        """Edge name (`sender->receiver`) -> edge index."""
        return {name: i for i, name in enumerate(self.edge_names())}

    def dense(self, edge_values: Tensor) -> Tensor:
        """[n_edges] -> [n_senders, n_receivers], zero where no edge exists."""
        out = edge_values.new_zeros(self.n_senders, self.n_receivers)
        out[self._edges] = edge_values
        return out

    def edges_of(self, matrix: Tensor) -> Tensor:
        """[n_senders, n_receivers] -> [n_edges]: the inverse of `dense`."""
        return matrix[self._edges]

    def sparsity(self, circuit: Tensor) -> float:
        """1 - kept / all edges of the full graph."""
        return 1.0 - float(circuit.sum()) / self.n_edges


def edge_count(
    n_layers: int,
    n_heads: int,
    n_kv_heads: int | None = None,
    grouped: bool = False,
    parallel: bool = False,
) -> int:
    """Edges of the graph in closed form (module docstring). `grouped=True` counts k and v
    receivers per KV head instead of per query head; `parallel=True` drops each layer's
    heads -> own MLP edges."""
    kv = n_kv_heads if grouped and n_kv_heads else n_heads
    per_layer_in = n_heads + 2 * kv  # attention receivers of one layer
    total = 0
    for layer in range(n_layers):
        upstream = 1 + layer * (n_heads + 1)
        total += per_layer_in * upstream + upstream + (0 if parallel else n_heads)
    return total + 1 + n_layers * (n_heads + 1)


def is_parallel(model) -> bool:
    """Whether the model's blocks run attention and MLP side by side on the block's input."""
    return bool(getattr(model.cfg, "parallel_attn_mlp", False))


def has_post_norm(model) -> bool:
    """Whether each block normalises its summed head outputs before the residual add
    (Gemma-2/3's post-attention norm, the bridge's `ln1_post`)."""
    return hasattr(model.blocks[0], "ln1_post")


def post_norm_module(model, layer: int):
    """Layer `layer`'s post-attention norm as a plain module (the bridge's wrapped original,
    so calling it fires no hooks)."""
    bridge = model.blocks[layer].ln1_post
    return getattr(bridge, "_original_component", bridge)


class UnsupportedArchitecture(UserError):
    """A model whose residual stream the engine cannot decompose into per-edge contributions."""


def check_patchable(model, tolerance: float | None = None) -> None:
    """Refuse, naming the reason, a model the engine cannot patch exactly. The engine needs, in
    every block: q/k/v inputs per query head that equal the block's residual input; the residual
    after attention = residual before + the sum of the per-head outputs + a constant bias, or,
    with a post-attention norm (Gemma-2/3), + that norm of the summed heads plus a constant bias;
    the MLP reading that residual (or, in a parallel block, the block's input) and adding its
    output to the residual (a norm after the MLP is inside the MLP node and fine). Checked on the
    structure and on one short forward (two 6-token rows, the last block's hooks), to a relative
    `tolerance` (default: 1e-4, or 4 machine epsilons of a half-precision model)."""
    cfg = model.cfg
    name = getattr(model, "name", None) or getattr(cfg, "model_name", "model")
    kv = getattr(cfg, "n_key_value_heads", None)
    if kv and kv != cfg.n_heads:
        raise UnsupportedArchitecture(
            f"{name} has {kv} KV heads for {cfg.n_heads} query heads; load it with "
            "hap.models.load_model, which ungroups grouped-query attention per query head"
        )
    if tolerance is None:
        dtype = next(model.parameters()).dtype
        tolerance = max(1e-4, 4 * torch.finfo(dtype).eps)
    _check_decomposition(model, name, tolerance)


@torch.no_grad()
def _check_decomposition(model, name: str, tolerance: float) -> None:
    device = next(model.parameters()).device
    vocab = int(model.cfg.d_vocab)
    tokens = torch.arange(12, device=device).reshape(2, 6) * 7 % vocab
    layer = model.cfg.n_layers - 1
    parallel, post_norm = is_parallel(model), has_post_norm(model)
    names = [
        "hook_resid_pre",
        "hook_q_input",
        "hook_k_input",
        "hook_v_input",
        "attn.hook_result",
        "hook_mlp_in",
        "hook_mlp_out",
        "hook_resid_post",
    ]
    names += [] if parallel else ["hook_resid_mid"]
    names += ["ln1_post.hook_in", "ln1_post.hook_out"] if post_norm else []
    hooks = [f"blocks.{layer}.{n}" for n in names]
    seen: dict[str, Tensor] = {}

    def keep(value: Tensor, hook, key: str) -> Tensor:
        seen[key] = value
        return value

    try:
        model.run_with_hooks(tokens, fwd_hooks=[(h, partial(keep, key=h)) for h in hooks])
    except Exception as error:
        missing = [h for h in hooks if h not in seen]
        raise UnsupportedArchitecture(
            f"{name} does not expose the hooks the engine reads ({', '.join(missing) or error}); "
            "load it with hap.models.load_model (split q/k/v inputs, per-head results)"
        ) from error
    missing = [h for h in hooks if h not in seen]
    if missing:
        raise UnsupportedArchitecture(f"{name} never fires {', '.join(missing)}")
    g = {h.split(".", 2)[2]: v for h, v in seen.items()}
    pre, post = g["hook_resid_pre"], g["hook_resid_post"]
    scale = float(pre.abs().max()) + 1.0
    problems = []
    for x in "qkv":
        value = g[f"hook_{x}_input"]
        if (
            value.shape[2] != model.cfg.n_heads
            or (value - pre[:, :, None]).abs().max() > tolerance * scale
        ):
            problems.append(f"its {x} inputs are not one residual copy per query head")

    def constant(value: Tensor) -> bool:  # the same at every row and position: a bias
        return bool((value - value[:1, :1]).abs().max() <= tolerance * scale)

    heads = g["attn.hook_result"].sum(2)
    attn_out = heads  # what the attention adds to the residual, up to a bias
    if post_norm:
        if not constant(g["ln1_post.hook_in"] - heads):
            problems.append("its post-attention norm does not read the sum of its heads")
        normed = post_norm_module(model, layer)(g["ln1_post.hook_in"])
        if (normed - g["ln1_post.hook_out"]).abs().max() > tolerance * scale:
            problems.append("its post-attention norm is not a function of the summed heads")
        attn_out = g["ln1_post.hook_out"]
    if parallel:
        mlp_reads = pre
        if not constant(post - pre - attn_out - g["hook_mlp_out"]):
            problems.append("its output is not its input plus its heads, its MLP and a bias")
    else:
        mid = g["hook_resid_mid"]
        mlp_reads = mid
        if not constant(mid - pre - attn_out):
            problems.append("the residual after attention is not the sum of its heads plus a bias")
        if (post - mid - g["hook_mlp_out"]).abs().max() > tolerance * scale:
            problems.append("its MLP output is not added to the residual as is")
    if (g["hook_mlp_in"] - mlp_reads).abs().max() > tolerance * scale:
        where = "the block's input" if parallel else "the residual after attention"
        problems.append(f"its MLP does not read {where}")
    if not problems and model.cfg.n_heads > 1 and not _heads_independent(model, tokens, layer):
        problems.append(
            "a head's q/k/v input reaches other heads (a norm across heads, as in OLMo-2's "
            "QK-norm), so a per-head receiver is not one head's input"
        )
    if problems:
        raise UnsupportedArchitecture(
            f"the engine cannot patch {name} exactly: {'; '.join(problems)}"
        )


@torch.no_grad()
def _heads_independent(model, tokens: Tensor, layer: int) -> bool:
    """Whether changing head 0's q, k and v inputs at `layer` leaves every other head's output
    as it was (per-head receivers are exact only then)."""
    result = f"blocks.{layer}.attn.hook_result"
    seen: dict[str, Tensor] = {}

    def keep(value: Tensor, hook, key: str) -> Tensor:
        seen[key] = value
        return value

    def nudge(value: Tensor, hook) -> Tensor:
        value = value.clone()
        value[:, :, 0] = value[:, :, 0] * 1.5 + 0.5
        return value

    model.run_with_hooks(tokens, fwd_hooks=[(result, partial(keep, key="before"))])
    nudges = [(f"blocks.{layer}.hook_{x}_input", nudge) for x in "qkv"]
    model.run_with_hooks(tokens, fwd_hooks=[*nudges, (result, partial(keep, key="after"))])
    before, after = seen["before"], seen["after"]
    others = (after[:, :, 1:] - before[:, :, 1:]).abs().max()
    own = (after[:, :, 0] - before[:, :, 0]).abs().max()
    return bool(others <= 1e-3 * max(float(own), 1e-6))
