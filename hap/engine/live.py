"""Live edges: the edges of a circuit that lie on a path from the input to the logits, and so can
change the output. Every comparison of circuit sizes in this project counts live edges."""

from __future__ import annotations

import torch
from torch import Tensor

from hap.engine.graph import Graph


def live_edges(graph: Graph, mask: Tensor, ablation: str = "corrupted") -> Tensor:
    """[n_edges] bool: the kept edges of `mask` that can change the output under `ablation`
    (MIB's circuit cleaning drops the others).

    Whatever the ablation, an edge into a node that cannot reach the logits through kept edges
    is dead: that node's output reaches the logits only through removed edges, which carry the
    baseline. Under corrupted ablation an edge out of a node that no kept path from the input
    reaches is dead too: every input of that node is the corrupted run's, so its output equals
    the corrupted output its removed edges would carry, and the edge adds zero. Under mean or
    zero ablation that second rule is wrong: a node fed only the mean (or the biases) outputs
    f(mean), not the mean of f, nor zero, so its kept out-edges change the output and stay."""
    kept = graph.dense(mask.cpu().to(torch.float)).bool()  # [n_senders, n_receivers]
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


def count_live(graph: Graph, mask: Tensor, ablation: str = "corrupted") -> int:
    return int(live_edges(graph, mask, ablation).sum())
