"""Shared fixtures: the real embedded model, loaded once per test session on the CPU."""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass

import pytest
import torch

from hap.circuit import Circuit
from hap.evaluate import Evaluation, evaluate_circuit
from hap.graph import Graph
from hap.models import load_model
from hap.registry import get_backend
from hap.tasks import make_task

REPORT: list[str] = []  # figures printed after the test summary (see pytest_terminal_summary)


@pytest.fixture(scope="session", autouse=True)
def _threads() -> None:
    torch.set_num_threads(2)


@pytest.fixture(scope="session")
def model():
    return load_model(device="cpu")


@pytest.fixture(scope="session")
def graph(model) -> Graph:
    return Graph.from_model(model)


@pytest.fixture(scope="session")
def ioi(model):
    return make_task("ioi", model.tokenizer, n_train=64, n_val=32, n_test=64, seed=0)


@dataclass
class Comparison:
    """HAP and EP at 94% on IOI, run interleaved (A B A B A B) in this process."""

    seconds: dict[str, list[float]]
    circuits: dict[str, Circuit]
    results: dict[str, Evaluation]

    def median(self, method: str) -> float:
        return statistics.median(self.seconds[method])


@pytest.fixture(scope="session")
def hap_vs_ep(model, graph, ioi) -> Comparison:
    seconds: dict[str, list[float]] = {"hap": [], "ep": []}
    circuits: dict[str, Circuit] = {}
    for _ in range(3):
        for method in ("hap", "ep"):
            start = time.perf_counter()
            circuits[method] = get_backend(method)(model, graph, ioi, 0.94, seed=0)
            seconds[method].append(time.perf_counter() - start)
    results = {m: evaluate_circuit(model, graph, ioi.test, c.mask) for m, c in circuits.items()}
    comparison = Comparison(seconds, circuits, results)
    REPORT.append(
        f"HAP vs EP at 94% on IOI ({torch.get_num_threads()} threads, 3 interleaved pairs): "
        f"median HAP {comparison.median('hap'):.1f}s, EP {comparison.median('ep'):.1f}s, "
        f"ratio {comparison.median('hap') / comparison.median('ep'):.3f}; "
        f"KL HAP {results['hap'].kl:.3f}, EP {results['ep'].kl:.3f}"
    )
    return comparison


def pytest_terminal_summary(terminalreporter) -> None:
    for line in REPORT:
        terminalreporter.write_line(line)
