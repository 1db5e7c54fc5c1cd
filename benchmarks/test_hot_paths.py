"""pytest-benchmark micro-benchmarks of the hot paths (not part of `make test`).

.venv/bin/python -m pytest benchmarks/test_hot_paths.py --benchmark-only
"""

import pytest
import torch

from hap.engine.ablation import run_activations
from hap.engine.graph import Graph
from hap.engine.patching import EdgeMaskedForward
from hap.models import load_model
from hap.search.attribution import attribution_scores
from hap.search.masks import SearchConfig, learn_masks
from hap.tasks import make_task


@pytest.fixture(scope="module")
def setup():
    torch.set_num_threads(2)
    model = load_model(device="cpu")
    graph = Graph.from_model(model)
    task = make_task("ioi", model.tokenizer, n_train=32, n_val=0, n_test=0, seed=0)
    return model, graph, task


def test_masked_forward(benchmark, setup):
    model, graph, task = setup
    baseline = run_activations(model, graph, task.train.corrupted)[1]
    forward = EdgeMaskedForward(model, graph)
    mask = torch.full((graph.n_edges,), 0.5)
    with torch.no_grad():
        benchmark(forward, task.train.clean, mask, baseline)


def test_eap_pass(benchmark, setup):
    model, graph, task = setup
    benchmark(attribution_scores, model, graph, task.train)


def test_one_ep_step(benchmark, setup):
    model, graph, task = setup
    config = SearchConfig(steps=1, warmup=1)
    benchmark(learn_masks, model, graph, task, 0.94, config, 0)
