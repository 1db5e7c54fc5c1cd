"""Shared fixtures: the real embedded model, loaded once per test session on the CPU."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
import torch
from speedup_check import (
    CheckResult,
    CheckSettings,
    ScaleResult,
    check_result,
    report,
    run_check,
    run_scale_check,
    scale_report,
)

from hap.engine.graph import Graph
from hap.experiments.frontier import Frontier
from hap.io.circuit import Circuit
from hap.models import load_model
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
class Speedup:
    """The CI speedup check's frontier (speedup_check) and the figures read off it."""

    frontiers: tuple[Frontier, Frontier]
    result: CheckResult

    def circuit(self, method: str) -> Circuit:
        """The method's circuit at the check's largest budget (94%)."""
        settings = CheckSettings()
        return self.frontiers[0].circuits[(method, settings.seed, max(settings.budgets))]


@pytest.fixture(scope="session")
def speedup(model, graph) -> Speedup:
    frontiers = run_check(model, graph)
    result = check_result(frontiers)
    REPORT.append(report(result))
    return Speedup(frontiers, result)


@pytest.fixture(scope="session")
def speedup_at_scale(speedup) -> ScaleResult:
    """The per-step ratio on the GPT-2-small shape, printed under the default model's figures."""
    result = run_scale_check(device="cpu")
    REPORT.append(scale_report(result))
    return result


def pytest_terminal_summary(terminalreporter) -> None:
    for line in REPORT:
        terminalreporter.write_line(line)


def pytest_collection_modifyitems(items) -> None:
    """Tests that use the speedup check run first: its per-step ratios are timings, measured in
    a process that no earlier test has left its allocations and caches in (the committed
    reference was measured that way; after the rest of the suite the 98% ratio, a slope over two
    budgets, read up to 1.08 against 0.85 alone)."""
    timed = {"speedup", "speedup_at_scale"}
    items.sort(key=lambda item: not timed & set(getattr(item, "fixturenames", ())))
