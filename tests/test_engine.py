"""The fast engine against the plain reference (tests/reference_engine.py), on a 2-layer random
GPT-2, on random 2-layer models of every supported family (Llama, Gemma-2/3, Pythia, Qwen2,
Mistral) and on the default model, over the whole graph and over restricted active sets; and EAP's
scores as gradients of the masked forward."""

from __future__ import annotations

import pytest
import torch

from hap.engine import metrics
from hap.engine.ablation import fixed_references, run_activations
from hap.engine.graph import Graph
from hap.engine.patching import EdgeMaskedForward
from hap.models import load_model, precision_dtype
from hap.models.shapes import build_checkpoint
from hap.search.attribution import attribution_scores
from hap.tasks import make_task
from tests.reference_engine import reference_logits


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """A 2-layer, 4-head, d64 GPT-2 with random weights, booted like a user's checkpoint."""
    model = load_model(build_checkpoint("tiny", seed=1, root=tmp_path_factory.mktemp("shapes")))
    task = make_task("ioi", model.tokenizer, n_train=12, n_val=0, n_test=0, seed=4)
    return model, Graph.from_model(model), task.train


@pytest.fixture(scope="module")
def llama(tmp_path_factory):
    """A 2-layer Llama (4 query heads sharing 2 KV heads, RMSNorm with random weights, RoPE,
    SwiGLU) with random weights, built offline and ungrouped by the loader."""
    root = tmp_path_factory.mktemp("shapes")
    model = load_model(build_checkpoint("llama-tiny", seed=1, root=root))
    task = make_task("ioi", model.tokenizer, n_train=12, n_val=0, n_test=0, seed=4)
    return model, Graph.from_model(model), task.train


def _family(shape: str, tmp_path_factory):
    model = load_model(build_checkpoint(shape, seed=1, root=tmp_path_factory.mktemp("shapes")))
    task = make_task("ioi", model.tokenizer, n_train=12, n_val=0, n_test=0, seed=4)
    return model, Graph.from_model(model), task.train


@pytest.fixture(scope="module")
def gemma(tmp_path_factory):
    """Gemma-3: post-attention norms (each receiver re-normalises its own mix of a layer's
    heads), QK-norm, 4 query heads on 1 KV head, local and global layers."""
    return _family("gemma-tiny", tmp_path_factory)


@pytest.fixture(scope="module")
def gemma2(tmp_path_factory):
    """Gemma-2: post-attention norms and logit soft-capping."""
    return _family("gemma2-tiny", tmp_path_factory)


@pytest.fixture(scope="module")
def pythia(tmp_path_factory):
    """GPT-NeoX / Pythia: attention and MLP in parallel on the block's input."""
    return _family("pythia-tiny", tmp_path_factory)


@pytest.fixture(scope="module")
def qwen2(tmp_path_factory):
    """Qwen2: q/k/v biases (random here) with grouped-query attention."""
    return _family("qwen2-tiny", tmp_path_factory)


@pytest.fixture(scope="module")
def mistral(tmp_path_factory):
    return _family("mistral-tiny", tmp_path_factory)


FAMILIES = ["gemma", "gemma2", "pythia", "qwen2", "mistral"]


@pytest.fixture(scope="module")
def trained(model, graph, ioi):
    return model, graph, ioi.train.subset(slice(0, 12))


def _active_sets(graph: Graph) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(7)
    order = torch.randperm(graph.n_edges, generator=generator)
    into_logits = (graph.edge_receiver == graph.n_receivers - 1).nonzero().squeeze(1)

    from_input = (graph.edge_sender == 0).nonzero().squeeze(1)

    def sample(n: int) -> torch.Tensor:
        # Plus every edge out of the input and into the logits, so that some path carries a
        # nonzero delta to the metric position (the prompts' last tokens agree).
        return torch.cat([order[:n], from_input, into_logits]).unique()

    return {
        "all": torch.arange(graph.n_edges),
        "quarter": sample(graph.n_edges // 4),
        "five-percent": sample(graph.n_edges // 20),
        "input-and-logits": torch.cat([from_input, into_logits]).unique(),
        "structured": _structured(graph),
    }


def _structured(graph: Graph) -> torch.Tensor:
    """Edges that take the engine's rarer paths. The last layer's attention reads every head of
    the layers below it; only the even layers' heads get an input edge, so the rows that need a
    gradient are scattered within that dense window (from 4 layers up). Layer 0's MLP reads just
    its first and last head, a gathered read (from 6 heads up). All reach the logits."""
    names = {n: i for i, n in enumerate(graph.edge_names())}
    h, last = graph.n_heads, graph.n_layers - 1
    edges = [
        f"a{layer}.h{i}->a{last}.h{j}<{x}>"
        for layer in range(last)
        for i in range(h)
        for j in range(h)
        for x in "qkv"
    ]
    edges += [f"input->a{layer}.h0<q>" for layer in range(0, last, 2)]
    edges += ["a0.h0->m0", f"a0.h{h - 1}->m0", "m0->logits", "input->logits"]
    edges += [f"a{last}.h{j}->logits" for j in range(h)]
    # A parallel block has no head -> own-MLP edges.
    return torch.tensor(sorted(names[e] for e in edges if e in names))


def _objective(logits: torch.Tensor, batch) -> torch.Tensor:
    at = metrics.at_position(logits, batch.position).log_softmax(-1)
    weights = torch.linspace(-1, 1, at.shape[-1])
    return (at * weights).sum()


@pytest.mark.parametrize("which", ["tiny", "llama", "trained", *FAMILIES])
@pytest.mark.parametrize(
    "subset", ["all", "quarter", "five-percent", "input-and-logits", "structured"]
)
def test_fast_engine_equals_reference_in_value_and_gradient(which, subset, request):
    model, graph, batch = request.getfixturevalue(which)
    _, baseline = fixed_references(model, graph, batch, "corrupted", batch)
    active = _active_sets(graph)[subset]
    values = torch.rand(active.numel(), generator=torch.Generator().manual_seed(3))
    fast_mask = values.clone().requires_grad_(True)
    fast = EdgeMaskedForward(model, graph, active)(batch.clean, fast_mask, baseline)
    _objective(fast, batch).backward()
    full_mask = torch.zeros(graph.n_edges)
    full_mask[active] = values
    full_mask.requires_grad_(True)
    reference = reference_logits(model, graph, batch.clean, full_mask, baseline)
    _objective(reference, batch).backward()
    assert (fast - reference).abs().max() < 1e-4
    scale = full_mask.grad[active].abs().max()
    assert scale > 0
    assert (fast_mask.grad - full_mask.grad[active]).abs().max() < 1e-4 * max(1.0, float(scale))


def test_structured_set_takes_the_gathered_read(trained):
    model, graph, _ = trained
    forward = EdgeMaskedForward(model, graph, _structured(graph))
    assert any(plan.rows is not None for plan in forward.plans.values())


@pytest.mark.parametrize("which", ["tiny", "llama", *FAMILIES])
def test_all_ones_is_clean_and_all_zeros_is_corrupted(which, request):
    model, graph, batch = request.getfixturevalue(which)
    clean_logits = run_activations(model, graph, batch.clean)[0]
    corrupted_logits, baseline = run_activations(model, graph, batch.corrupted)
    forward = EdgeMaskedForward(model, graph)
    with torch.no_grad():
        ones = forward(batch.clean, torch.ones(graph.n_edges), baseline)
        zeros = forward(batch.clean, torch.zeros(graph.n_edges), baseline)
        none = EdgeMaskedForward(model, graph, torch.zeros(0, dtype=torch.long))
        empty = none(batch.clean, torch.zeros(0), baseline)
    assert (ones - clean_logits).abs().max() < 1e-4
    assert (zeros - corrupted_logits).abs().max() < 1e-4
    assert (empty - corrupted_logits).abs().max() < 1e-4
    assert (clean_logits - corrupted_logits).abs().max() > 1e-2


@pytest.fixture(scope="module")
def tiny64(tmp_path_factory):
    """The tiny model in float64: a check of exactness by finite differences must not depend on
    the CPU's float32 rounding (float32 central differences drift by a few percent between AVX2
    and AVX-512 kernels)."""
    root = tmp_path_factory.mktemp("shapes64")
    model = load_model(build_checkpoint("tiny", seed=1, root=root), dtype=torch.float64)
    task = make_task("ioi", model.tokenizer, n_train=12, n_val=0, n_test=0, seed=4)
    return model, Graph.from_model(model), task.train


def test_restricted_gradients_match_finite_differences(tiny64):
    model, graph, batch = tiny64
    _, baseline = fixed_references(model, graph, batch, "corrupted", batch)
    active = _active_sets(graph)["quarter"]
    forward = EdgeMaskedForward(model, graph, active)
    mask = torch.full((active.numel(),), 0.5, dtype=torch.float64)

    def objective(values: torch.Tensor) -> torch.Tensor:
        return _objective(forward(batch.clean, values, baseline), batch)

    leaf = mask.clone().requires_grad_(True)
    objective(leaf).backward()
    picks = torch.topk(leaf.grad.abs(), 4).indices.tolist() + [0, active.numel() - 1]
    # In float64, central differences at eps 1e-4 err by O(eps^2) ~ 1e-8 (truncation) plus
    # ~1e-16 / eps ~ 1e-12 (rounding): 1e-5 relative is loose by three orders.
    eps = 1e-4
    with torch.no_grad():
        for i in picks:
            up, down = mask.clone(), mask.clone()
            up[i] += eps
            down[i] -= eps
            numeric = float(objective(up) - objective(down)) / (2 * eps)
            assert numeric == pytest.approx(float(leaf.grad[i]), rel=1e-5, abs=1e-9)


def test_restricted_engine_holds_only_active_senders_and_groups(tiny):
    model, graph, _ = tiny
    # Only edges into layer 1's MLP from layer 0's heads: no deltas for other senders, one group.
    mlp1 = next(g for g in graph.receiver_groups if g.kind == "mlp" and g.layer == 1)
    heads0 = next(g for g in graph.sender_groups if g.kind == "attn" and g.layer == 0)
    edges = (graph.edge_receiver == mlp1.first) & (graph.edge_sender >= heads0.first)
    edges &= graph.edge_sender < heads0.first + heads0.size
    forward = EdgeMaskedForward(model, graph, edges.nonzero().squeeze(1))
    assert forward.n_local_senders == heads0.size
    # Those rows are written before layer 1's attention reads, so its one matmul carries them.
    attn1, mlp1 = graph.receiver_groups.index(mlp1) - 1, graph.receiver_groups.index(mlp1)
    plans = list(forward.plans.values())
    assert [(p.at, p.carry, p.parts) for p in plans] == [(attn1, (mlp1,), (None, None, None))]


def test_bf16_stays_within_tolerance_of_fp32(trained):
    """The stated tolerance of `precision_dtype("bf16")` on the default model: the masked
    forward's KL to the fp32 one below 5e-3 nats, mask gradients and EAP scores with cosine
    similarity above 0.999 to fp32's, and the same top 5% of edges by |EAP score| to within 10%."""
    fp32, graph, batch = trained
    bf16 = load_model(dtype=precision_dtype("bf16"))
    assert next(bf16.parameters()).dtype == torch.bfloat16
    values = torch.rand(graph.n_edges, generator=torch.Generator().manual_seed(0))
    outputs = {}
    for name, model in (("fp32", fp32), ("bf16", bf16)):
        full, baseline = fixed_references(model, graph, batch, "corrupted", batch)
        mask = values.clone().requires_grad_(True)
        logits = EdgeMaskedForward(model, graph)(batch.clean, mask, baseline)
        at = metrics.at_position(logits, batch.position)
        metrics.kl_divergence(full, at).mean().backward()
        outputs[name] = (at.float().detach(), mask.grad, attribution_scores(model, graph, batch))
    (logits32, grad32, eap32), (logits16, grad16, eap16) = outputs["fp32"], outputs["bf16"]
    assert metrics.kl_divergence(logits32, logits16).mean() < 5e-3
    cosine = torch.nn.functional.cosine_similarity
    assert cosine(grad32, grad16, dim=0) > 0.999
    assert cosine(eap32, eap16, dim=0) > 0.999
    k = graph.n_edges // 20
    top32, top16 = eap32.abs().topk(k).indices.tolist(), eap16.abs().topk(k).indices.tolist()
    assert len(set(top32) & set(top16)) >= 0.9 * k


@pytest.mark.parametrize("ablation", ["corrupted", "mean", "zero"])
@pytest.mark.parametrize("which", ["tiny", "llama", "trained", *FAMILIES])
def test_eap_scores_are_minus_the_mask_gradient_at_one(which, ablation, request):
    """score(u -> v) = (y~_u - y_u) . d metric / d x_v = -d metric / d m[u, v] at m = 1, with y~
    the ablation's baseline (mean ablation averages over the batch itself). With post-attention
    norms a head's score passes through its layer's norm (its Jacobian at the clean point)."""
    model, graph, batch = request.getfixturevalue(which)
    scores = attribution_scores(model, graph, batch, metric="logit_diff", ablation=ablation)
    _, baseline = fixed_references(model, graph, batch, ablation, batch)
    mask = torch.ones(graph.n_edges, requires_grad=True)
    logits = EdgeMaskedForward(model, graph)(batch.clean, mask, baseline)
    value = metrics.logit_diff(metrics.at_position(logits, batch.position), batch).sum()
    (value / len(batch)).backward()
    assert scores.abs().max() > 1e-4  # random 2-layer models' scores are small
    assert (scores + mask.grad).abs().max() < 1e-5 * max(1.0, float(scores.abs().max()))


def test_a_step_returns_its_buffers_while_the_loss_is_still_held(trained):
    """After the backward, the stream's delta and gradient buffers are back in the engine's
    spare list although the caller still holds the loss (and so the autograd nodes): the next
    step reuses them instead of allocating a third and fourth."""
    model, graph, batch = trained
    _, baseline = fixed_references(model, graph, batch, "corrupted", batch)
    forward = EdgeMaskedForward(model, graph)
    mask = torch.full((graph.n_edges,), 0.5, requires_grad=True)
    loss = _objective(forward(batch.clean, mask, baseline), batch)
    loss.backward()
    assert len(forward._spare) == 2
    kept = {t.data_ptr() for t in forward._spare}
    again = _objective(forward(batch.clean, mask, baseline), batch)
    again.backward()
    assert {t.data_ptr() for t in forward._spare} == kept
    assert loss.requires_grad  # still held
