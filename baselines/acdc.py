"""ACDC (Conmy et al. 2023): greedy edge removal in reverse topological order with a KL threshold.

For each receiver from the logits backwards, and each of its incoming edges from the latest sender
backwards, the edge is removed if that raises KL(full || circuit) by less than `threshold`. One
masked forward per edge: the slow reference point, meant for small graphs. The threshold, not the
target sparsity, decides the size of the result; the target is recorded beside the measured one.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import torch

from hap.engine import metrics
from hap.engine.ablation import Ablation, check_ablation, fixed_references
from hap.engine.graph import Graph
from hap.engine.patching import EdgeMaskedForward
from hap.io.circuit import Circuit
from hap.tasks.base import Task


@dataclass(frozen=True)
class ACDCConfig:
    """threshold: nats of KL a removal may add (ACDC's budget knob: it, not the target, sets the
    circuit's size). n_examples: train examples used for every decision."""

    threshold: float = 0.01
    n_examples: int = 32
    ablation: str = Ablation.CORRUPTED.value

    def validate(self) -> None:
        from hap.search.config import check_ranges

        check_ranges(
            self,
            {
                "threshold": (self.threshold >= 0, "must be >= 0, nats of KL a removal may add"),
                "n_examples": (self.n_examples >= 1, "must be >= 1"),
            },
        )
        check_ablation(self.ablation)


@torch.no_grad()
def discover(
    model, graph: Graph, task: Task, target_sparsity: float, seed: int, config: ACDCConfig
) -> Circuit:
    device = next(model.parameters()).device
    start = time.perf_counter()
    data = task.train.subset(slice(0, config.n_examples)).to(device)
    full, baseline = fixed_references(model, graph, data, config.ablation, data)
    forward = EdgeMaskedForward(model, graph)

    def kl(mask: torch.Tensor) -> float:
        logits = metrics.at_position(forward(data.clean, mask, baseline), data.position)
        return float(metrics.kl_divergence(full, logits).mean())

    mask = torch.ones(graph.n_edges, device=device)
    current = kl(mask)
    # Reverse topological order: receivers from the logits back, senders from the latest back.
    order = torch.argsort(
        graph.edge_receiver * graph.n_senders + graph.edge_sender, descending=True
    )
    for edge in order.tolist():
        mask[edge] = 0.0
        trial = kl(mask)
        if trial - current < config.threshold:
            current = trial
        else:
            mask[edge] = 1.0
    return Circuit.build(
        "acdc",
        graph,
        mask.bool().cpu(),
        target_sparsity,
        seed,
        config,
        timings={"total": time.perf_counter() - start},
        details={"final_kl_train": current},
    )
