"""Discovery backends by name. A new backend is one module with `discover(...)` and one line here.

Every backend: discover(model, graph, task, target_sparsity, seed=0, **config) -> Circuit, run on
the task's train split, on the model's device.
"""

from __future__ import annotations

from collections.abc import Callable

from baselines import acdc, eap, eap_ig, edge_pruning
from hap import hybrid
from hap.circuit import Circuit

BACKENDS: dict[str, Callable[..., Circuit]] = {
    "eap": eap.discover,
    "eap-ig": eap_ig.discover,
    "ep": edge_pruning.discover,
    "hap": hybrid.discover,
    "acdc": acdc.discover,
}


def get_backend(name: str) -> Callable[..., Circuit]:
    if name not in BACKENDS:
        raise ValueError(f"unknown method {name!r}; choose one of {', '.join(BACKENDS)}")
    return BACKENDS[name]
