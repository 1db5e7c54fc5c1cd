"""A discovered circuit: a boolean edge mask with the scores, config and timings that produced it."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING

import torch
from torch import Tensor

from hap.engine.graph import Graph

if TYPE_CHECKING:  # a type only: io sits below search
    from hap.search.selection import Selection


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
        selection: Selection | None = None,
    ) -> Circuit:
        """The one way backends make their result: sparsity measured on `mask`, the config
        dataclass recorded as plain data, and the selection's budget and live edges in
        `details` (`mask` is then the selection's)."""
        if selection is not None:
            mask = selection.mask
            details = {**selection.record(), **(details or {})}
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

    def top(self, k: int, graph: Graph) -> list[tuple[str, float]]:
        """The k kept edges of largest |score| (by name), for a look in a notebook."""
        kept = self.mask.nonzero().squeeze(1)
        if self.scores is None:
            return [(graph.edge_names()[i], float("nan")) for i in kept[:k].tolist()]
        order = torch.argsort(self.scores[kept].abs(), descending=True, stable=True)[:k]
        names = graph.edge_names()
        return [(names[i], float(self.scores[i])) for i in kept[order].tolist()]

    def __repr__(self) -> str:
        budget = self.details.get("budget")
        size = f"{self.n_edges} edges" + (f" of a {budget}-edge budget" if budget else "")
        steps = f", {self.steps} steps" if self.steps is not None else ""
        return (
            f"Circuit({self.method}, {size}, sparsity {self.sparsity:.4f}, seed {self.seed}{steps})"
        )
