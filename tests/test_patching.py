import pytest
import torch

from hap.engine.ablation import Ablation, compute_baseline, run_activations
from hap.engine.graph import Graph
from hap.engine.patching import EdgeMaskedForward
from hap.models import load_model


@pytest.fixture(scope="module")
def batch(ioi):
    return ioi.train.subset(slice(0, 16))


@pytest.fixture(scope="module")
def runs(model, graph, batch):
    clean_logits, clean_acts = run_activations(model, graph, batch.clean)
    corrupted_logits, corrupted = run_activations(model, graph, batch.corrupted)
    return clean_logits, clean_acts, corrupted_logits, corrupted


def _edge(graph: Graph, name: str) -> int:
    return graph.edge_names().index(name)


def test_all_ones_is_clean_and_all_zeros_is_corrupted(model, graph, batch, runs):
    clean_logits, _, corrupted_logits, baseline = runs
    forward = EdgeMaskedForward(model, graph)
    with torch.no_grad():
        ones = forward(batch.clean, torch.ones(graph.n_edges), baseline)
        zeros = forward(batch.clean, torch.zeros(graph.n_edges), baseline)
    assert (ones - clean_logits).abs().max() < 1e-4
    assert (zeros - corrupted_logits).abs().max() < 1e-4


def test_removing_one_edge_equals_a_hand_written_patch(model, graph, batch, runs):
    _, clean_acts, _, baseline = runs
    sender = graph.sender_names.index("a0.h3")
    delta = clean_acts.senders[sender] - baseline.senders[sender]

    def patch_v(value, hook):
        value = value.clone()
        value[:, :, 1] -= delta  # head 1's value input loses a0.h3's clean-minus-corrupted output
        return value

    expected = model.run_with_hooks(batch.clean, fwd_hooks=[("blocks.2.hook_v_input", patch_v)])
    mask = torch.ones(graph.n_edges)
    mask[_edge(graph, "a0.h3->a2.h1<v>")] = 0
    with torch.no_grad():
        got = EdgeMaskedForward(model, graph)(batch.clean, mask, baseline)
    assert (got - expected).abs().max() < 1e-4
    assert (expected - run_activations(model, graph, batch.clean)[0]).abs().max() > 1e-3


def test_keeping_one_edge_equals_a_hand_written_patch(model, graph, batch, runs):
    _, clean_acts, _, baseline = runs
    embed_delta = clean_acts.senders[0] - baseline.senders[0]
    expected = model.run_with_hooks(
        batch.corrupted,
        fwd_hooks=[("blocks.3.hook_resid_post", lambda value, hook: value + embed_delta)],
    )
    mask = torch.zeros(graph.n_edges)
    mask[_edge(graph, "input->logits")] = 1
    with torch.no_grad():
        got = EdgeMaskedForward(model, graph)(batch.clean, mask, baseline)
    assert (got - expected).abs().max() < 1e-4


def test_active_subset_equals_full_graph_with_zeros_outside(model, graph, batch, runs):
    baseline = runs[3]
    generator = torch.Generator().manual_seed(0)
    active = torch.randperm(graph.n_edges, generator=generator)[: graph.n_edges // 4].sort().values
    values = torch.rand(active.numel(), generator=generator)
    full_mask = torch.zeros(graph.n_edges)
    full_mask[active] = values
    with torch.no_grad():
        full = EdgeMaskedForward(model, graph)(batch.clean, full_mask, baseline)
        restricted = EdgeMaskedForward(model, graph, active)(batch.clean, values, baseline)
    assert (full - restricted).abs().max() < 1e-4


def test_mask_gradients_match_finite_differences(graph, batch):
    """In float64 (the default model loaded in double precision): a check of exactness by finite
    differences must not depend on the CPU's float32 rounding."""
    model = load_model(device="cpu", dtype=torch.float64)
    small = batch.subset(slice(0, 4))
    _, small_baseline = run_activations(model, graph, small.corrupted)
    forward = EdgeMaskedForward(model, graph)
    answer = small.answers[:, 0]

    def objective(mask: torch.Tensor) -> torch.Tensor:
        logits = forward(small.clean, mask, small_baseline)
        rows = torch.arange(len(small))
        return logits[rows, small.position, answer].sum()

    mask = torch.full((graph.n_edges,), 0.5, dtype=torch.float64, requires_grad=True)
    objective(mask).backward()
    assert torch.isfinite(mask.grad).all()
    edges = [
        _edge(graph, n)
        for n in ("input->logits", "a3.h2->logits", "m0->a2.h5<k>", "a1.h0->m1", "input->a0.h4<q>")
    ]
    eps = 1e-4  # float64: truncation O(eps^2) ~ 1e-8, rounding ~ 1e-12
    with torch.no_grad():
        for e in edges:
            up, down = mask.detach().clone(), mask.detach().clone()
            up[e] += eps
            down[e] -= eps
            numeric = (objective(up) - objective(down)) / (2 * eps)
            assert numeric.item() == pytest.approx(mask.grad[e].item(), rel=1e-5, abs=1e-8)


def test_zero_and_mean_ablation(model, graph, batch, ioi):
    zero = compute_baseline(model, graph, batch.clean, ablation=Ablation.ZERO)
    assert zero.senders.abs().max() == 0
    forward = EdgeMaskedForward(model, graph)
    with torch.no_grad():
        ones = forward(batch.clean, torch.ones(graph.n_edges), zero)
        clean_logits = run_activations(model, graph, batch.clean)[0]
        assert (ones - clean_logits).abs().max() < 1e-4
        reference = ioi.val
        mean = compute_baseline(
            model,
            graph,
            batch.clean,
            ablation="mean",
            reference=reference.clean,
            reference_position=reference.position,
        )
        acts = run_activations(model, graph, reference.clean)[1]
        long_enough = reference.position >= 5
        expected = acts.senders[:, long_enough, 5].mean(1)
        assert torch.allclose(mean.senders[:, 0, 5], expected, atol=1e-5)
        empty = forward(batch.clean, torch.zeros(graph.n_edges), mean)
        assert torch.isfinite(empty).all()
        assert (empty - clean_logits).abs().max() > 1e-2


def test_mean_ablation_refuses_a_short_reference(model, graph, batch, ioi):
    with pytest.raises(ValueError, match="at least as long"):
        compute_baseline(
            model,
            graph,
            batch.clean,
            ablation="mean",
            reference=batch.clean[:, :3],
            reference_position=torch.full((16,), 2),
        )
