"""EAP-IG (Hanna et al. 2024): EAP with gradients averaged over input-embedding interpolations."""

from __future__ import annotations

from baselines import eap
from hap.circuit import Circuit
from hap.graph import Graph
from hap.tasks.base import Task

DEFAULT_IG_STEPS = 5


def discover(
    model, graph: Graph, task: Task, target_sparsity: float, seed: int = 0, **overrides
) -> Circuit:
    overrides.setdefault("ig_steps", DEFAULT_IG_STEPS)
    return eap.discover(model, graph, task, target_sparsity, seed, **overrides)
