"""Architectures beyond GPT-2: the edge-count formula (sequential and parallel blocks),
grouped-query attention ungrouped per query head (MIB's convention), hand-written patches on a
random Llama, Gemma-3 (post-attention norms) and Pythia (parallel blocks), and the one-line refusal
of what the engine cannot patch exactly. Every model here is built offline from a config; the
families' all-ones/all-zeros and fast-vs-reference checks live in tests/test_engine.py."""

from __future__ import annotations

import pytest
import torch
from transformers import AutoModelForCausalLM

from hap.engine.ablation import run_activations
from hap.engine.graph import Graph, UnsupportedArchitecture, edge_count
from hap.engine.patching import EdgeMaskedForward
from hap.models import load_model
from hap.models.architectures import ARCHITECTURES
from hap.models.shapes import LLAMA_SHAPES, build_checkpoint
from hap.tasks import make_task


@pytest.fixture(scope="module")
def shapes(tmp_path_factory):
    return tmp_path_factory.mktemp("shapes")


@pytest.fixture(scope="module")
def llama(shapes):
    path = build_checkpoint("llama-tiny", seed=2, root=shapes)
    model = load_model(path)
    batch = make_task("ioi", model.tokenizer, n_train=8, n_val=0, n_test=0, seed=9).train
    return path, model, Graph.from_model(model), batch


@pytest.mark.parametrize(
    ("shape", "edges"),
    [((12, 12), 32491), ((24, 14), 179749), ((30, 9), 123211), ((2, 4), 110), ((4, 8), 1519)],
)
def test_edge_count_formula(shape, edges):
    """GPT-2 small and Qwen2.5-0.5B as MIB counts them, SmolLM2-135M, the tiny Llama and the
    default model: the closed form, the graph's own enumeration and the figure agree."""
    assert edge_count(*shape) == Graph(*shape).n_edges == edges


def test_grouped_convention_counts_kv_receivers_per_kv_head():
    # 2 layers, 4 query heads, 2 KV heads: attention receivers per layer 4 + 2 * 2 = 8, not 12.
    # Layer 0: 8 * 1 + (1 + 4); layer 1: 8 * 6 + (6 + 4); logits: 11.
    assert edge_count(2, 4, 2, grouped=True) == 8 + 5 + 48 + 10 + 11
    assert edge_count(2, 4, 2, grouped=False) == 110


def test_ungrouped_model_is_the_same_function(llama):
    path, model, graph, batch = llama
    original = AutoModelForCausalLM.from_pretrained(path).eval()
    assert original.config.num_key_value_heads == 2 and model.kv_heads == 2
    assert LLAMA_SHAPES["llama-tiny"]["num_attention_heads"] == graph.n_heads == 4
    with torch.no_grad():
        want = original(batch.clean).logits.log_softmax(-1)
        got = model(batch.clean).log_softmax(-1)
    assert (want - got).abs().max() < 1e-4


def test_removing_one_k_edge_changes_that_query_head_alone(llama):
    """Heads 2 and 3 share a KV head in the checkpoint; removing input -> a1.h3<k> equals a hand
    patch of head 3's k input only, and differs from patching the shared KV head (both)."""
    _, model, graph, batch = llama
    clean, acts = run_activations(model, graph, batch.clean)
    _, baseline = run_activations(model, graph, batch.corrupted)
    delta = acts.senders[0] - baseline.senders[0]

    def patch(heads):
        def hook(value, hook):
            value = value.clone()
            value[:, :, heads] -= delta[:, :, None]
            return value

        return model.run_with_hooks(batch.clean, fwd_hooks=[("blocks.1.hook_k_input", hook)])

    mask = torch.ones(graph.n_edges)
    mask[graph.edge_names().index("input->a1.h3<k>")] = 0
    with torch.no_grad():
        got = EdgeMaskedForward(model, graph)(batch.clean, mask, baseline)
        alone, shared = patch([3]), patch([2, 3])
    assert (got - alone).abs().max() < 1e-4
    assert (alone - clean).abs().max() > 1e-3
    assert (alone - shared).abs().max() > 1e-3


def test_keeping_one_path_equals_a_hand_written_patch(llama):
    """Keep input -> a0.h1<q,k,v>, a0.h1 -> m1 and m1 -> logits: a0.h1 computes its clean
    output, m1 alone reads it on top of the corrupted run, and m1's change reaches the logits.
    The same edges without the head's inputs carry nothing (the head sees corrupted inputs)."""
    _, model, graph, batch = llama
    _, acts = run_activations(model, graph, batch.clean)
    corrupted, baseline = run_activations(model, graph, batch.corrupted)
    sender = graph.sender_names.index("a0.h1")
    delta = acts.senders[sender] - baseline.senders[sender]
    expected = model.run_with_hooks(
        batch.corrupted,
        fwd_hooks=[("blocks.1.hook_mlp_in", lambda value, hook: value + delta)],
    )
    names = graph.edge_names()
    mask = torch.zeros(graph.n_edges)
    mask[names.index("a0.h1->m1")] = 1
    mask[names.index("m1->logits")] = 1
    forward = EdgeMaskedForward(model, graph)
    with torch.no_grad():
        edge_alone = forward(batch.clean, mask, baseline)
        for x in "qkv":
            mask[names.index(f"input->a0.h1<{x}>")] = 1
        got = forward(batch.clean, mask, baseline)
    assert (edge_alone - corrupted).abs().max() < 1e-4
    assert (got - expected).abs().max() < 1e-4
    assert (expected - corrupted).abs().max() > 1e-3


@pytest.mark.parametrize("arch", ARCHITECTURES, ids=lambda a: a.shape)
def test_every_row_of_the_architectures_table_holds(shapes, arch):
    """Supported families boot and pass the engine's exactness check (their all-ones,
    fast-vs-reference and EAP checks are in tests/test_engine.py); refused ones fail in one line
    with the reason the table gives."""
    if arch.supported:
        graph = Graph.from_model(load_model(build_checkpoint(arch.shape, seed=1, root=shapes)))
        assert graph.n_edges == edge_count(
            graph.n_layers, graph.n_heads, parallel="parallel" in arch.note
        )
        assert graph.parallel == ("parallel" in arch.note)
        assert graph.post_norm == ("post-attention norm" in arch.note)
        return
    with pytest.raises(UnsupportedArchitecture, match=arch.note) as error:
        Graph.from_model(load_model(build_checkpoint(arch.shape, seed=1, root=shapes)))
    assert "\n" not in str(error.value)


def test_parallel_blocks_drop_the_head_to_own_mlp_edges(shapes):
    model = load_model(build_checkpoint("pythia-tiny", seed=1, root=shapes))
    graph = Graph.from_model(model)
    assert graph.parallel and not graph.post_norm
    assert graph.n_edges == edge_count(2, 4, parallel=True) == edge_count(2, 4) - 2 * 4 == 102
    names = set(graph.edge_names())
    assert "a0.h1->m0" not in names and "a0.h1->m1" in names and "input->m0" in names
    # Pythia-70M's shape: 6 layers x 8 heads.
    assert Graph(6, 8, parallel=True).n_edges == edge_count(6, 8, parallel=True) == 3580


@torch.no_grad()
def _without(model, graph, batch, baseline, edge: str):
    """The engine's logits on the clean prompts with every edge kept but `edge`."""
    mask = torch.ones(graph.n_edges)
    mask[graph.edge_names().index(edge)] = 0
    return EdgeMaskedForward(model, graph)(batch.clean, mask, baseline)


def test_parallel_mlp_edge_equals_a_hand_written_patch(shapes):
    """Removing input -> m0 in a parallel block patches the MLP's read of the block input alone;
    the layer's attention still reads the clean input."""
    model = load_model(build_checkpoint("pythia-tiny", seed=1, root=shapes))
    graph = Graph.from_model(model)
    batch = make_task("ioi", model.tokenizer, n_train=8, n_val=0, n_test=0, seed=9).train
    clean, acts = run_activations(model, graph, batch.clean)
    _, baseline = run_activations(model, graph, batch.corrupted)
    delta = acts.senders[0] - baseline.senders[0]
    expected = model.run_with_hooks(
        batch.clean, fwd_hooks=[("blocks.0.hook_mlp_in", lambda value, hook: value - delta)]
    )
    got = _without(model, graph, batch, baseline, "input->m0")
    assert (got - expected).abs().max() < 1e-4
    assert (expected - clean).abs().max() > 1e-4


def test_post_norm_head_edge_equals_a_hand_written_patch(shapes):
    """Gemma-3: removing a0.h1 -> m1 gives m1 the post-attention norm of layer 0's heads with
    head 1's output swapped for its corrupted one; every other receiver reads the clean run.
    Subtracting the head's share after the norm instead (a linear patch) is a different model."""
    model = load_model(build_checkpoint("gemma-tiny", seed=1, root=shapes))
    graph = Graph.from_model(model)
    assert graph.post_norm and not graph.parallel
    batch = make_task("ioi", model.tokenizer, n_train=8, n_val=0, n_test=0, seed=9).train
    clean, acts = run_activations(model, graph, batch.clean)
    _, baseline = run_activations(model, graph, batch.corrupted)
    head = graph.sender_names.index("a0.h1")
    delta = acts.senders[head] - baseline.senders[head]
    norm = model.blocks[0].ln1_post._original_component
    shift = norm(acts.attn_pre[0] - delta) - norm(acts.attn_pre[0])
    expected = model.run_with_hooks(
        batch.clean, fwd_hooks=[("blocks.1.hook_mlp_in", lambda value, hook: value + shift)]
    )
    linear = model.run_with_hooks(
        batch.clean, fwd_hooks=[("blocks.1.hook_mlp_in", lambda value, hook: value - delta)]
    )
    got = _without(model, graph, batch, baseline, "a0.h1->m1")
    assert (got - expected).abs().max() < 1e-4
    assert (expected - clean).abs().max() > 1e-4
    assert (linear - expected).abs().max() > 1e-4


@pytest.mark.parametrize("shape", ["gemma-tiny", "pythia-tiny"])
def test_batched_exact_effects_follow_the_family(shapes, shape):
    """The case study's batched per-edge effects equal one masked forward per edge: through the
    post-attention norm (Gemma-3) and without head -> own-MLP edges (Pythia)."""
    from hap.analysis.exact import compute_effects, exact_reference

    model = load_model(build_checkpoint(shape, seed=1, root=shapes))
    graph = Graph.from_model(model)
    data = make_task("ioi", model.tokenizer, n_train=8, n_val=0, n_test=0, seed=9).train
    edges = torch.arange(graph.n_edges)
    d_kl, d_ld, _ = compute_effects(model, graph, data, "corrupted", edges=edges, chunk=16)
    ref_kl, ref_ld = exact_reference(model, graph, data, edges, "corrupted")
    assert (d_kl - ref_kl).abs().max() < 1e-5
    assert (d_ld - ref_ld).abs().max() < 1e-4
    assert ref_ld.abs().max() > 1e-3


def test_the_readme_table_is_the_architectures_table():
    from pathlib import Path

    from hap.models.architectures import markdown

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    block = readme.split("<!-- architectures -->\n", 1)[1].split("\n<!-- /architectures -->")[0]
    assert block == markdown()
