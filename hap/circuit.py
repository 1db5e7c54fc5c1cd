"""A discovered circuit: a boolean edge mask with the scores, config and timings that produced it."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from torch import Tensor

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

    def to_json(self, graph: Graph) -> dict:
        names = graph.edge_names()
        return {
            "method": self.method,
            "graph": {"n_layers": graph.n_layers, "n_heads": graph.n_heads},
            "target_sparsity": self.target_sparsity,
            "sparsity": self.sparsity,
            "n_edges": self.n_edges,
            "seed": self.seed,
            "config": self.config,
            "steps": self.steps,
            "details": self.details,
            "timings": self.timings,
            "edges": {
                names[i]: (None if self.scores is None else float(self.scores[i]))
                for i in self.mask.nonzero().squeeze(1).tolist()
            },
        }

    def save(self, path: str | Path, graph: Graph) -> None:
        Path(path).write_text(json.dumps(self.to_json(graph), indent=1) + "\n")

    @classmethod
    def load(cls, path: str | Path, graph: Graph) -> Circuit:
        try:
            data = json.loads(Path(path).read_text())
            index = {name: i for i, name in enumerate(graph.edge_names())}
            mask = torch.zeros(graph.n_edges, dtype=torch.bool)
            mask[[index[name] for name in data["edges"]]] = True
        except (json.JSONDecodeError, KeyError, TypeError) as error:
            raise ValueError(f"{path} is not a circuit file for this graph ({error!r})") from error
        return cls(
            data["method"],
            mask,
            data["target_sparsity"],
            graph.sparsity(mask),
            seed=data.get("seed", 0),
            config=data.get("config", {}),
            steps=data.get("steps"),
            details=data.get("details", {}),
            timings=data.get("timings", {}),
        )


def edges_for_sparsity(graph: Graph, target_sparsity: float) -> int:
    """How many edges a circuit of `target_sparsity` keeps (rounded to the nearest edge)."""
    if not 0.0 <= target_sparsity < 1.0:
        raise ValueError(f"sparsity must be in [0, 1), got {target_sparsity}; e.g. --sparsity 0.94")
    return max(1, round((1.0 - target_sparsity) * graph.n_edges))


def top_edges(scores: Tensor, n: int) -> Tensor:
    """[n_edges] bool: the n edges of largest |score| (ties broken by index, deterministically)."""
    order = torch.argsort(scores.abs(), descending=True, stable=True)
    mask = torch.zeros(scores.numel(), dtype=torch.bool)
    mask[order[:n]] = True
    return mask


def prune_dangling(graph: Graph, mask: Tensor) -> Tensor:
    """Drop kept edges whose sender is unreachable from the input or whose receiver cannot reach
    the logits through kept edges: they cannot change the output (MIB's circuit cleaning)."""
    kept = graph.dense(mask.to(torch.float)).bool()  # [n_senders, n_receivers]
    node_of = graph.receiver_node
    reached = torch.zeros(graph.n_senders, dtype=torch.bool)
    reached[0] = True
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
