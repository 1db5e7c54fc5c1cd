"""Shared fixtures: the real embedded model, loaded once per test session on the CPU."""

from __future__ import annotations

import pytest
import torch

from hap.graph import Graph
from hap.models import load_model
from hap.tasks import make_task


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
