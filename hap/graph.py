"""The computation graph: sender outputs -> receiver inputs, as dense index tensors.

Convention (EAP-IG / MIB): one `input` node (token + position embeddings), heads `a{L}.h{H}`, MLPs
`m{L}`, and `logits`. Senders, in forward order: input, then per layer its heads and its MLP.
Receivers, in forward order: per layer the q, k and v inputs of each head (`a{L}.h{H}<q>` ...) and
the MLP input, then logits. An edge joins every sender to every receiver downstream of it; an
attention layer feeds the MLP of the same layer (GPT-2's sequential block). GPT-2 small has 32,491
edges under this convention.

A circuit is a boolean vector over edges; `edge_sender` / `edge_receiver` index the dense
[n_senders, n_receivers] view used by the patching engine and the attribution scores.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property

import torch
from torch import Tensor

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
    """The edge graph of a transformer with `n_layers` layers of `n_heads` heads each."""

    n_layers: int
    n_heads: int
    sender_groups: tuple[SenderGroup, ...] = field(init=False)
    receiver_groups: tuple[ReceiverGroup, ...] = field(init=False)

    def __post_init__(self) -> None:
        senders = [SenderGroup("input", -1, 0, 1)]
        receivers = []
        n_s, n_r = 1, 0
        for layer in range(self.n_layers):
            receivers.append(ReceiverGroup("attn", layer, n_r, 3 * self.n_heads, n_s))
            n_r += 3 * self.n_heads
            senders.append(SenderGroup("attn", layer, n_s, self.n_heads))
            n_s += self.n_heads
            receivers.append(ReceiverGroup("mlp", layer, n_r, 1, n_s))
            n_r += 1
            senders.append(SenderGroup("mlp", layer, n_s, 1))
            n_s += 1
        receivers.append(ReceiverGroup("logits", self.n_layers, n_r, 1, n_s))
        object.__setattr__(self, "sender_groups", tuple(senders))
        object.__setattr__(self, "receiver_groups", tuple(receivers))

    @classmethod
    def from_model(cls, model) -> Graph:
        return cls(model.cfg.n_layers, model.cfg.n_heads)

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
