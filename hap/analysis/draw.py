"""Circuit diagrams: the circuit as a layered graph, drawn with networkx and matplotlib.

Input at the bottom, logits at the top, one row per layer (its heads left to right, its MLP at the
right end); only nodes with a kept edge are drawn. Edges into a head's q, k and v inputs are styled
apart (solid, dashed, dotted), other edges are grey; edge width follows |score| when the circuit
has scores; nodes are coloured by role when a roles table (hap.analysis.roles) is given. Where Graphviz's
`dot` program and the pydot package are installed, `layout="dot"` uses Graphviz's layered layout
instead of the fixed grid. Pure Python otherwise: nothing to install system-wide.

At the sizes circuits are published (MIB's GPT-2 IOI circuits hold hundreds of edges) the edge
view is a hairball, so `view="nodes"` draws one straight bundle per (sender node, receiver node)
pair, its width the number of kept edges it holds (a head's q, k and v count apart) and its
opacity its share of the score mass, with nodes sized by the kept edges they touch; `top` keeps
only the heaviest bundles.
"""

from __future__ import annotations

import math
import shutil
from pathlib import Path

import networkx as nx
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch

from hap.engine.graph import Graph
from hap.io.circuit import Circuit

ROLE_COLORS = {
    "name mover": "#d62728",
    "negative name mover": "#9467bd",
    "s-inhibition": "#ff7f0e",
    "s-attention": "#e377c2",
    "induction": "#2ca02c",
    "duplicate-token": "#17becf",
    "previous-token": "#bcbd22",
}
NODE_COLORS = {"input": "#7f7f7f", "logits": "#7f7f7f", "mlp": "#c7c7c7", "head": "#aec7e8"}
QKV_STYLE = {"q": ("solid", "#1f77b4"), "k": ("dashed", "#2ca02c"), "v": ("dotted", "#d62728")}


def circuit_graph(graph: Graph, circuit: Circuit) -> nx.DiGraph:
    """The circuit's kept edges as a networkx graph: nodes named as in EAP-IG; each edge's
    `qkv` (None outside head inputs) and `score` (None without scores)."""
    g = nx.DiGraph()
    names = graph.edge_names()
    for i in circuit.mask.nonzero().squeeze(1).tolist():
        sender, receiver = names[i].split("->")
        qkv = receiver[-2] if receiver.endswith(">") else None
        node = receiver.split("<")[0]
        score = None if circuit.scores is None else float(circuit.scores[i])
        if g.has_edge(sender, node):  # q, k and v edges between one pair: keep each as an attribute
            g.edges[sender, node]["parts"].append((qkv, score))
        else:
            g.add_edge(sender, node, parts=[(qkv, score)])
    return g


def _grid_positions(graph: Graph, nodes) -> dict[str, tuple[float, float]]:
    width = graph.n_heads + 1
    pos = {}
    for name in nodes:
        if name == "input":
            pos[name] = (width / 2 - 0.5, 0.0)
        elif name == "logits":
            pos[name] = (width / 2 - 0.5, graph.n_layers + 1.0)
        elif name.startswith("m"):
            pos[name] = (float(graph.n_heads), int(name[1:]) + 1.0)
        else:
            layer, head = name[1:].split(".h")
            pos[name] = (float(head), int(layer) + 1.0 - 0.15 * (int(head) % 2))
    return pos


def _positions(graph: Graph, g: nx.DiGraph, layout: str) -> dict:
    if layout == "dot" and shutil.which("dot"):
        try:
            pos = nx.nx_pydot.graphviz_layout(g, prog="dot")
            return {n: (x, -y) for n, (x, y) in pos.items()}  # dot puts sources at the top
        except (ImportError, OSError):
            pass
    return _grid_positions(graph, g.nodes)


def draw_circuit(
    ax,
    graph: Graph,
    circuit: Circuit,
    roles: dict[str, str] | None = None,
    title: str = "",
    layout: str = "grid",
) -> None:
    """Draw `circuit` on matplotlib axes `ax` (module docstring)."""
    g = circuit_graph(graph, circuit)
    roles = roles or {}
    pos = _positions(graph, g, layout)
    magnitudes = [
        abs(s)
        for _, _, d in g.edges(data=True)
        for _, s in d["parts"]
        if s is not None and math.isfinite(s)
    ]
    top = max(magnitudes) if magnitudes else 0.0

    def width(score) -> float:
        if score is None or not top or not math.isfinite(score):
            return 1.0
        return 0.5 + 3.5 * abs(score) / top

    for sender, receiver, data in g.edges(data=True):
        for k, (qkv, score) in enumerate(data["parts"]):
            style, color = QKV_STYLE.get(qkv, ("solid", "#7f7f7f"))
            nx.draw_networkx_edges(
                g,
                pos,
                edgelist=[(sender, receiver)],
                ax=ax,
                style=style,
                edge_color=color,
                width=width(score),
                alpha=0.7,
                arrows=True,
                arrowsize=8,
                connectionstyle=f"arc3,rad={0.08 * (k + 1)}",
                node_size=420,
            )
    colors = []
    for node in g.nodes:
        if node in roles:
            colors.append(ROLE_COLORS.get(roles[node], NODE_COLORS["head"]))
        elif node in ("input", "logits"):
            colors.append(NODE_COLORS[node])
        else:
            colors.append(NODE_COLORS["mlp" if node.startswith("m") else "head"])
    nx.draw_networkx_nodes(g, pos, ax=ax, node_color=colors, node_size=420, edgecolors="black")
    nx.draw_networkx_labels(g, pos, ax=ax, font_size=6)
    ax.set_title(title or f"{circuit.method}: {circuit.n_edges} edges", fontsize=9)
    ax.set_axis_off()


def bundles(g: nx.DiGraph) -> dict[tuple[str, str], tuple[int, float]]:
    """(sender, receiver node) -> (kept edges in the bundle, their summed finite |score|)."""
    out = {}
    for sender, receiver, data in g.edges(data=True):
        mass = sum(abs(s) for _, s in data["parts"] if s is not None and math.isfinite(s))
        out[sender, receiver] = (len(data["parts"]), mass)
    return out


def draw_nodes(
    ax,
    graph: Graph,
    circuit: Circuit,
    roles: dict[str, str] | None = None,
    title: str = "",
    layout: str = "grid",
    top: int | None = None,
) -> None:
    """The node-level view of `circuit` on `ax` (module docstring)."""
    g = circuit_graph(graph, circuit)
    roles = roles or {}
    pos = _positions(graph, g, layout)
    weights = bundles(g)
    ranked = sorted(weights, key=lambda pair: weights[pair][::-1], reverse=True)
    shown = ranked[:top] if top else ranked
    most = max((weights[p][0] for p in shown), default=1)
    heaviest = max((weights[p][1] for p in shown), default=0.0)
    for pair in reversed(shown):  # the heaviest drawn last, on top
        count, mass = weights[pair]
        share = mass / heaviest if heaviest else 1.0
        nx.draw_networkx_edges(
            g,
            pos,
            edgelist=[pair],
            ax=ax,
            edge_color="#4c4c4c",
            width=0.4 + 2.6 * count / most,
            alpha=0.15 + 0.7 * share,
            arrows=True,
            arrowsize=6,
            node_size=300,
        )
    touched = {node: 0 for node in g.nodes}
    for (sender, receiver), (count, _) in weights.items():
        touched[sender] += count
        touched[receiver] += count
    busiest = max(touched.values(), default=1)
    colors = [
        ROLE_COLORS.get(roles[n], NODE_COLORS["head"])
        if n in roles
        else NODE_COLORS[n if n in ("input", "logits") else "mlp" if n.startswith("m") else "head"]
        for n in g.nodes
    ]
    sizes = [120 + 600 * touched[n] / busiest for n in g.nodes]
    nx.draw_networkx_nodes(g, pos, ax=ax, node_color=colors, node_size=sizes, edgecolors="black")
    nx.draw_networkx_labels(g, pos, ax=ax, font_size=5)
    kept = (
        f"{len(shown)} of {len(ranked)} node pairs"
        if top and top < len(ranked)
        else (f"{len(ranked)} node pairs")
    )
    ax.set_title((title or f"{circuit.method}: {circuit.n_edges} edges") + f" ({kept})", fontsize=9)
    ax.set_axis_off()


def _legend(fig: Figure, roles: dict[str, str] | None, view: str = "edges") -> None:
    if view == "nodes":
        handles = [
            Line2D([0], [0], color="#4c4c4c", linewidth=3, label="wider: more kept edges"),
            Line2D([0], [0], color="#4c4c4c", alpha=0.3, label="fainter: less score mass"),
        ]
    else:
        handles = [
            Line2D([0], [0], color=color, linestyle=style, label=f"into {part}")
            for part, (style, color) in QKV_STYLE.items()
        ]
        handles.append(Line2D([0], [0], color="#7f7f7f", label="into an MLP or the logits"))
    shown = sorted(set((roles or {}).values()), key=list(ROLE_COLORS).index)
    handles += [Patch(color=ROLE_COLORS[r], label=r) for r in shown if r in ROLE_COLORS]
    fig.legend(handles=handles, loc="lower center", ncol=min(len(handles), 5), fontsize=7)


def draw_circuits(
    panels: list[tuple[str, Circuit]],
    graph: Graph,
    path: str | Path,
    roles: dict[str, str] | None = None,
    layout: str = "grid",
    suptitle: str = "",
    view: str = "edges",
    top: int | None = None,
) -> Path:
    """One PNG with each (title, circuit) side by side, in the edge or the node view."""
    fig = Figure(figsize=(6.5 * len(panels), 6.5))
    axes = fig.subplots(1, len(panels), squeeze=False)[0]
    for ax, (title, circuit) in zip(axes, panels):
        if view == "nodes":
            draw_nodes(ax, graph, circuit, roles, title, layout, top)
        else:
            draw_circuit(ax, graph, circuit, roles, title, layout)
    _legend(fig, roles, view)
    if suptitle:
        fig.suptitle(suptitle, fontsize=10)
    fig.tight_layout(rect=(0, 0.06, 1, 0.97))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=130)
    return path
