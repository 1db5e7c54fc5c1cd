"""A discovered circuit: a boolean edge mask with the scores, config and timings that produced it."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from torch import Tensor

from hap.errors import UserError
from hap.graph import Graph


@dataclass
class Circuit:
    """mask: [n_edges] bool, the kept edges. scores: [n_edges] float where the method ranks edges
    (attribution scores, or log-alpha for pruning methods); `sparsity` is measured on `mask`
    against the full graph. `config` is the backend's resolved config (every setting that
    produced the circuit); `steps` the optimisation steps actually run (mask-learning methods
    only); `details` what the run found out beyond the mask (e.g. HAP's candidate count, why a
    search stopped). `timings` holds wall seconds per stage (e.g. attribution, pruning)."""

    method: str
    mask: Tensor
    target_sparsity: float
    sparsity: float
    seed: int = 0
    scores: Tensor | None = None
    config: dict = field(default_factory=dict)
    steps: int | None = None
    details: dict = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)

    @classmethod
    def build(
        cls,
        method: str,
        graph: Graph,
        mask: Tensor,
        target_sparsity: float,
        seed: int,
        config: object,
        timings: dict[str, float],
        scores: Tensor | None = None,
        steps: int | None = None,
        details: dict | None = None,
    ) -> Circuit:
        """The one way backends make their result: sparsity measured on `mask`, the config
        dataclass recorded as plain data."""
        return cls(
            method=method,
            mask=mask,
            target_sparsity=target_sparsity,
            sparsity=graph.sparsity(mask),
            seed=seed,
            scores=scores,
            config=asdict(config),
            steps=steps,
            details=details or {},
            timings=timings,
        )

    @property
    def n_edges(self) -> int:
        return int(self.mask.sum())

    def save(self, path: str | Path, graph: Graph, fmt: str = "native") -> None:
        """Write this circuit to `path` in `fmt`: "native", "eap-ig" or "eap-ig-pt"
        (hap.formats)."""
        from hap.formats import write_circuit

        write_circuit(self, graph, path, fmt)

    @classmethod
    def load(cls, path: str | Path, graph: Graph | None = None) -> Circuit:
        """A circuit file in any format hap.formats reads; with `graph`, one made for another
        graph shape is refused."""
        from hap.formats import read_circuit

        return read_circuit(path, graph)[0]


def edges_for_sparsity(graph: Graph, target_sparsity: float) -> int:
    """How many edges a circuit of `target_sparsity` keeps (rounded to the nearest edge)."""
    if not 0.0 <= target_sparsity < 1.0:
        raise UserError(f"sparsity must be in [0, 1), got {target_sparsity}; e.g. --sparsity 0.94")
    return max(1, round((1.0 - target_sparsity) * graph.n_edges))


def top_edges(scores: Tensor, n: int) -> Tensor:
    """[n_edges] bool: the n edges of largest |score| (ties broken by index, deterministically)."""
    order = torch.argsort(scores.abs(), descending=True, stable=True)
    mask = torch.zeros(scores.numel(), dtype=torch.bool)
    mask[order[:n]] = True
    return mask


def prune_dangling(graph: Graph, mask: Tensor, ablation: str = "corrupted") -> Tensor:
    """Drop kept edges that cannot change the output under `ablation` (MIB's circuit cleaning).

    Whatever the ablation, an edge into a node that cannot reach the logits through kept edges
    is dead: that node's output reaches the logits only through removed edges, which carry the
    baseline. Under corrupted ablation an edge out of a node that no kept path from the input
    reaches is dead too: every input of that node is the corrupted run's, so its output equals
    the corrupted output its removed edges would carry, and the edge adds zero. Under mean or
    zero ablation that second rule is wrong: a node fed only the mean (or the biases) outputs
    f(mean), not the mean of f, nor zero, so its kept out-edges change the output and stay."""
    kept = graph.dense(mask.to(torch.float)).bool()  # [n_senders, n_receivers]
    node_of = graph.receiver_node
    reached = torch.ones(graph.n_senders, dtype=torch.bool)
    if ablation == "corrupted":
        reached[1:] = False
        for g in graph.sender_groups[1:]:
            hits = (kept & reached[:, None]).any(0)  # receivers fed by a reached sender
            nodes = node_of[hits]
            inside = (nodes >= g.first) & (nodes < g.first + g.size)
            reached[nodes[inside]] = True
    alive = torch.zeros(graph.n_receivers, dtype=torch.bool)
    alive[-1] = True  # logits
    for g in reversed(graph.receiver_groups[:-1]):
        cols = slice(g.first, g.first + g.size)
        node_alive = (kept[node_of[cols]] & alive[None, :]).any(1)
        alive[cols] = node_alive
    return graph.edges_of(kept & reached[:, None] & alive[None, :])
