"""ACDC (Conmy et al. 2023): greedy edge removal in reverse topological order with a KL threshold.

For each receiver from the logits backwards, and each of its incoming edges from the latest sender
backwards, the edge is removed if that raises KL(full || circuit) by less than `threshold`. One
masked forward per edge: the slow reference point, meant for small graphs. The threshold, not the
target sparsity, decides the size of the result; the target is recorded beside the measured one.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass

import torch

from hap import metrics
from hap.circuit import Circuit
from hap.graph import Graph
from hap.patching import EdgeMaskedForward, fixed_references
from hap.tasks.base import Task


@dataclass(frozen=True)
class ACDCConfig:
    threshold: float = 0.01  # nats of KL a removal may add
    n_examples: int = 32  # train examples used for every decision
    ablation: str = "corrupted"


@torch.no_grad()
def discover(
    model, graph: Graph, task: Task, target_sparsity: float, seed: int = 0, **overrides
) -> Circuit:
    config = ACDCConfig(**overrides)
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
    kept = mask.bool().cpu()
    return Circuit(
        method="acdc",
        mask=kept,
        target_sparsity=target_sparsity,
        sparsity=graph.sparsity(kept),
        config={**asdict(config), "seed": seed, "final_kl_train": current},
        timings={"total": time.perf_counter() - start},
    )
