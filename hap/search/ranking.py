"""Rank arithmetic over edge scores: ranks by |score|, the mean-rank ensemble, and a priority
that the |score|-ranking code (`hap.search.selection.top_edges`, `select`) reads back in the same
order.

Convention, stated once: rank 0 is the edge of largest |score|; tied edges share the mean of the
ranks they span (scipy's "average" ranks), so a rank is a float in [0, n_edges - 1] and the ranks
of n edges always sum to n (n - 1) / 2.
"""

from __future__ import annotations

import torch
from torch import Tensor


def ranks(scores: Tensor) -> Tensor:
    """[n_edges] float64 rank of each edge by |score| (module docstring: 0 = largest, ties
    averaged)."""
    magnitude = scores.detach().abs().double().flatten().cpu()
    n = magnitude.numel()
    order = torch.argsort(magnitude, descending=True, stable=True)
    ordered = magnitude[order]
    # runs of equal values: each position's run id, then the mean position of its run
    starts = torch.ones(n, dtype=torch.bool)
    starts[1:] = ordered[1:] != ordered[:-1]
    run = torch.cumsum(starts.long(), 0) - 1
    positions = torch.arange(n, dtype=torch.float64)
    run_sum = torch.zeros(int(run[-1]) + 1 if n else 0, dtype=torch.float64)
    run_sum.index_add_(0, run, positions)
    run_size = torch.bincount(run).double()
    out = torch.empty(n, dtype=torch.float64)
    out[order] = (run_sum / run_size)[run]
    return out


def mean_rank(*scores: Tensor) -> Tensor:
    """[n_edges] the mean over `scores` (each [n_edges]) of each edge's rank by |score|: the
    ensemble ranking (EAP and EAP-IG in `hap.search.hybrid.attribute`). Smaller is better."""
    if not scores:
        raise ValueError("mean_rank needs at least one score tensor")
    return torch.stack([ranks(s) for s in scores]).mean(0)


def priority(rank: Tensor) -> Tensor:
    """[n_edges] float32 n_edges - rank: positive, larger for better-ranked edges, so code that
    ranks by |score| (selection, HAP's candidates) ranks these edges by `rank`, ascending; and
    `ranks(priority(r))` is `r` re-ranked (r itself where r is a ranking already)."""
    return (rank.numel() - rank).float()
