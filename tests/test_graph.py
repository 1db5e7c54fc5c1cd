import torch

from hap.engine.graph import Graph


def test_gpt2_small_edge_count_matches_eap_ig_convention():
    assert Graph(12, 12).n_edges == 32491


def test_default_model_edge_count(graph):
    # 4 layers x 8 heads: sum over layers of 24 * (1 + 9L) + (9 + 9L), plus 37 edges into logits.
    assert (graph.n_layers, graph.n_heads) == (4, 8)
    assert graph.n_edges == 1519 == Graph(4, 8).n_edges


def test_small_config_counted_by_hand():
    # 1 layer, 1 head: input->{q,k,v,mlp,logits}, a0.h0->{m0,logits}, m0->logits.
    g = Graph(1, 1)
    assert g.n_edges == 8
    assert sorted(g.edge_names()) == sorted(
        [
            "input->a0.h0<q>",
            "input->a0.h0<k>",
            "input->a0.h0<v>",
            "input->m0",
            "input->logits",
            "a0.h0->m0",
            "a0.h0->logits",
            "m0->logits",
        ]
    )


def test_edges_only_point_downstream():
    g = Graph(3, 2)
    names = set(g.edge_names())
    assert "a1.h0->m1" in names  # attention feeds the MLP of its own layer
    assert "a1.h0->a1.h1<q>" not in names  # but not the heads of its own layer
    assert "m1->a1.h0<k>" not in names
    assert "m0->a1.h1<v>" in names


def test_dense_and_edges_of_are_inverse():
    g = Graph(2, 3)
    values = torch.arange(g.n_edges, dtype=torch.float) + 1
    dense = g.dense(values)
    assert dense.shape == (g.n_senders, g.n_receivers)
    assert torch.equal(g.edges_of(dense), values)
    assert int((dense != 0).sum()) == g.n_edges
    assert g.sparsity(torch.zeros(g.n_edges, dtype=torch.bool)) == 1.0
