"""Circuit files: this project's JSON, and EAP-IG's / MIB's graph JSON and `.pt`, read and written.

EAP-IG / MIB graph JSON (hannamw/EAP-IG `Graph.to_json`, the format MIB's circuit track takes):

    {"cfg": {"n_layers", "n_heads", "parallel_attn_mlp", "d_model"},
     "nodes": {"input" | "a{L}.h{H}" | "m{L}" | "logits": {"in_graph": bool}},
     "edges": {"parent->child[<q|k|v>]": {"score": float, "in_graph": bool}}}

Every edge of the graph is listed (in or out of the circuit) with its score. A node is in the
graph when it has a kept out-edge and, except the input, a kept in-edge; the logits always are.
The `.pt` form holds the same as dense tensors: `edges_scores` / `edges_in_graph`
[n_forward, n_backward] and `nodes_in_graph` [n_forward], with `src_nodes` / `dst_nodes` naming
rows and columns. Its layout (senders: input, then per layer its heads and its MLP; receivers:
per layer the q, k, v inputs of every head and the MLP, then the logits) is `Graph.dense`'s, so
the tensors are written and read without reordering.

What EAP-IG has no field for (method, target, seed, resolved config, steps, timings, and whether
the circuit had scores at all) rides along under a top-level "hap" key, which EAP-IG ignores: an
export read back gives the same circuit. A circuit without scores (ACDC) is exported with its
mask as scores (1.0 kept, 0.0 not), since EAP-IG needs a score on every edge; non-finite scores
(HAP's -inf outside its candidates) are written as JSON's -Infinity, which Python's and EAP-IG's
readers take.

The native JSON keeps the kept edges by name with their scores (readable), and the whole score
vector in edge order, so it holds everything the EAP-IG file does and more.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from pathlib import Path

import torch
from torch import Tensor

from hap.engine.graph import Graph
from hap.errors import UserError
from hap.io.circuit import Circuit

FORMATS = ("native", "eap-ig", "eap-ig-pt")
NATIVE_TAG = "hap-circuit/1"


class CircuitFileError(UserError):
    """A circuit file that cannot be read, or was made for another graph."""


def node_in_graph(graph: Graph, mask: Tensor) -> Tensor:
    """[n_senders] bool: EAP-IG's node flags for circuit `mask` (see the module docstring)."""
    kept = graph.dense(mask.to(torch.float)).bool()
    has_out = kept.any(1)
    fed = kept.any(0)  # [n_receivers]
    has_in = torch.zeros(graph.n_senders, dtype=torch.bool)
    node = graph.receiver_node
    inner = node >= 0
    has_in.index_put_((node[inner],), fed[inner], accumulate=True)
    has_in[0] = True
    return has_out & has_in


def _hap_extra(circuit: Circuit) -> dict:
    return {
        "method": circuit.method,
        "target_sparsity": circuit.target_sparsity,
        "seed": circuit.seed,
        "config": circuit.config,
        "steps": circuit.steps,
        "details": circuit.details,
        "timings": circuit.timings,
        "has_scores": circuit.scores is not None,
    }


def _export_scores(circuit: Circuit) -> Tensor:
    if circuit.scores is None:
        return circuit.mask.to(torch.float32)
    return circuit.scores.to(torch.float32)


def _cfg(graph: Graph) -> dict:
    return {
        "n_layers": graph.n_layers,
        "n_heads": graph.n_heads,
        "parallel_attn_mlp": False,
        "d_model": graph.d_model,
    }


def to_native(circuit: Circuit, graph: Graph) -> dict:
    names = graph.edge_names()
    scores = None if circuit.scores is None else circuit.scores.tolist()
    return {
        "format": NATIVE_TAG,
        "graph": {"n_layers": graph.n_layers, "n_heads": graph.n_heads, "d_model": graph.d_model},
        "sparsity": circuit.sparsity,
        "n_edges": circuit.n_edges,
        **_hap_extra(circuit),
        "edges": {
            names[i]: (None if scores is None else scores[i])
            for i in circuit.mask.nonzero().squeeze(1).tolist()
        },
        "scores": scores,
    }


def to_eapig(circuit: Circuit, graph: Graph) -> dict:
    names = graph.edge_names()
    scores = _export_scores(circuit).tolist()
    kept = circuit.mask.tolist()
    nodes = {
        name: {"in_graph": bool(flag)}
        for name, flag in zip(graph.sender_names, node_in_graph(graph, circuit.mask).tolist())
    }
    nodes["logits"] = {"in_graph": True}
    return {
        "cfg": _cfg(graph),
        "nodes": nodes,
        "edges": {n: {"score": s, "in_graph": k} for n, s, k in zip(names, scores, kept)},
        "hap": _hap_extra(circuit),
    }


def to_eapig_pt(circuit: Circuit, graph: Graph) -> dict:
    return {
        "cfg": _cfg(graph),
        "src_nodes": list(graph.sender_names),
        "dst_nodes": list(graph.receiver_names),
        "edges_scores": graph.dense(_export_scores(circuit)),
        "edges_in_graph": graph.dense(circuit.mask.to(torch.float)).bool(),
        "nodes_in_graph": node_in_graph(graph, circuit.mask),
        "hap": _hap_extra(circuit),
    }


def atomic_write(path: Path, write) -> None:
    """Call `write(binary file)` on a temporary file beside `path`, then rename it over `path`:
    readers, and a run killed mid-write, see the old file or the new one, never half of one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "wb") as f:
            write(f)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp's 0600 would hide the file from other users
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_circuit(circuit: Circuit, graph: Graph, path: str | Path, fmt: str = "native") -> None:
    """Write `circuit` in `fmt` (one of FORMATS), atomically."""
    path = Path(path)
    if fmt == "eap-ig-pt":
        atomic_write(path, lambda f: torch.save(to_eapig_pt(circuit, graph), f))
        return
    if fmt not in FORMATS:
        raise UserError(f"unknown circuit format {fmt!r}; choose one of {', '.join(FORMATS)}")
    data = to_native(circuit, graph) if fmt == "native" else to_eapig(circuit, graph)
    text = json.dumps(data, indent=1 if fmt == "native" else None) + "\n"
    atomic_write(path, lambda f: f.write(text.encode()))


def _graph_from_cfg(cfg: dict, path: Path) -> Graph:
    try:
        n_layers, n_heads = int(cfg["n_layers"]), int(cfg["n_heads"])
        d_model = int(cfg["d_model"]) if cfg.get("d_model") is not None else None
    except (KeyError, TypeError, ValueError) as error:
        raise CircuitFileError(
            f"{path}: its cfg needs integer n_layers and n_heads ({error!r})"
        ) from error
    if cfg.get("parallel_attn_mlp"):
        raise CircuitFileError(
            f"{path} is a circuit of a parallel attention/MLP model; hap's graph is sequential"
        )
    if n_layers < 1 or n_heads < 1:
        raise CircuitFileError(f"{path}: n_layers and n_heads must be positive, got {cfg}")
    return Graph(n_layers, n_heads, d_model)


def check_same_shape(file_graph: Graph, graph: Graph, path: str | Path) -> None:
    """Refuse a circuit made for another graph, naming both shapes."""
    same = (file_graph.n_layers, file_graph.n_heads) == (graph.n_layers, graph.n_heads)
    if same and file_graph.d_model and graph.d_model:
        same = file_graph.d_model == graph.d_model
    if not same:
        raise CircuitFileError(
            f"{path} is a circuit for {file_graph.shape()}, but the model's graph is "
            f"{graph.shape()}: pass the --model it was made for"
        )


def _circuit(graph: Graph, mask: Tensor, scores: Tensor | None, extra: dict) -> Circuit:
    return Circuit(
        method=extra.get("method", "imported"),
        mask=mask,
        target_sparsity=extra.get("target_sparsity", graph.sparsity(mask)),
        sparsity=graph.sparsity(mask),
        seed=extra.get("seed", 0),
        scores=scores if extra.get("has_scores", True) else None,
        config=extra.get("config", {}),
        steps=extra.get("steps"),
        details=extra.get("details", {}),
        timings=extra.get("timings", {}),
    )


def _rows(names, graph: Graph, path: Path) -> list[int]:
    """The edge indices of `names`; a name the graph does not have is refused."""
    index = graph.edge_index
    unknown = [name for name in names if name not in index]
    if unknown:
        raise CircuitFileError(
            f"{path} names {len(unknown)} edge(s) the {graph.shape()} graph does not have, "
            f"e.g. {unknown[0]!r}"
        )
    return [index[name] for name in names]


def _from_eapig(data: dict, path: Path) -> tuple[Circuit, Graph]:
    graph = _graph_from_cfg(data["cfg"], path)
    edges = data["edges"]
    if not isinstance(edges, dict):
        raise CircuitFileError(f"{path}: 'edges' must map edge names to {{score, in_graph}}")
    rows = _rows(edges, graph, path)
    mask = torch.zeros(graph.n_edges, dtype=torch.bool)
    scores = torch.full((graph.n_edges,), math.nan)
    try:
        mask[rows] = torch.tensor([bool(e["in_graph"]) for e in edges.values()], dtype=torch.bool)
        values = [math.nan if e.get("score") is None else float(e["score"]) for e in edges.values()]
    except (KeyError, TypeError, ValueError, AttributeError) as error:
        raise CircuitFileError(
            f"{path}: every edge needs an in_graph flag and a numeric score ({error!r})"
        ) from error
    scores[rows] = torch.tensor(values, dtype=torch.float32)
    return _circuit(graph, mask, scores, data.get("hap", {})), graph


def _from_eapig_pt(data: dict, path: Path) -> tuple[Circuit, Graph]:
    graph = _graph_from_cfg(data["cfg"], path)
    expected = (graph.n_senders, graph.n_receivers)
    for key in ("edges_scores", "edges_in_graph"):
        if tuple(data[key].shape) != expected:
            raise CircuitFileError(
                f"{path}: {key} is {tuple(data[key].shape)}, the {graph.shape()} graph needs "
                f"{expected}"
            )
    if list(data.get("dst_nodes", graph.receiver_names)) != graph.receiver_names:
        raise CircuitFileError(f"{path}: its dst_nodes are not in EAP-IG's order")
    in_graph = data["edges_in_graph"].bool()
    if (in_graph & ~graph.valid).any():
        raise CircuitFileError(f"{path} keeps edges that do not exist (sender after receiver)")
    mask = graph.edges_of(in_graph)
    scores = graph.edges_of(data["edges_scores"].to(torch.float32))
    return _circuit(graph, mask, scores, data.get("hap", {})), graph


def _from_native(data: dict, path: Path) -> tuple[Circuit, Graph]:
    graph = _graph_from_cfg(data["graph"], path)
    rows = _rows(data["edges"], graph, path)
    mask = torch.zeros(graph.n_edges, dtype=torch.bool)
    mask[rows] = True
    scores = data.get("scores")
    if scores is not None:
        if len(scores) != graph.n_edges:
            raise CircuitFileError(f"{path}: {len(scores)} scores for {graph.n_edges} edges")
        scores = torch.tensor([math.nan if s is None else s for s in scores], dtype=torch.float32)
    elif any(v is not None for v in data["edges"].values()):  # files written before "scores"
        scores = torch.full((graph.n_edges,), math.nan)
        for row, value in zip(rows, data["edges"].values()):
            scores[row] = math.nan if value is None else value
    extra = {**data, "has_scores": scores is not None}
    return _circuit(graph, mask, scores, extra), graph


def detect_format(path: str | Path) -> str:
    """Which of FORMATS the file at `path` is in (by content, not name)."""
    path = Path(path)
    with open(path, "rb") as f:
        head = f.read(64)
    if head[:2] == b"PK" or head[:1] == b"\x80":  # torch.save's zip archive, or a raw pickle
        return "eap-ig-pt"
    try:
        data = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        if head.lstrip()[:1] in (b"{", b"["):
            raise CircuitFileError(f"{path} is not valid JSON ({error})") from error
        raise CircuitFileError(f"{path} is neither circuit JSON nor an EAP-IG .pt file") from error
    if isinstance(data, dict) and {"cfg", "edges"} <= set(data):
        return "eap-ig"
    if isinstance(data, dict) and {"graph", "edges"} <= set(data):
        return "native"
    keys = sorted(data) if isinstance(data, dict) else type(data).__name__
    raise CircuitFileError(
        f"{path} is JSON but no circuit: EAP-IG's needs cfg, nodes and edges, hap's graph and "
        f"edges (it has {keys})"
    )


def read_circuit(path: str | Path, graph: Graph | None = None) -> tuple[Circuit, Graph]:
    """A circuit file in any of FORMATS (detected) and the graph it was made for; with `graph`,
    a file made for another shape is refused (CircuitFileError)."""
    path = Path(path)
    if not path.is_file():
        raise CircuitFileError(f"circuit file {path} does not exist")
    fmt = detect_format(path)
    try:
        if fmt == "eap-ig-pt":
            try:
                data = torch.load(path, map_location="cpu", weights_only=True)
            except Exception as error:  # torch raises several types for a non-torch file
                raise CircuitFileError(
                    f"{path} is neither circuit JSON nor an EAP-IG .pt file ({type(error).__name__})"
                ) from error
            if not isinstance(data, dict):
                raise CircuitFileError(f"{path} holds no EAP-IG graph dict")
            circuit, file_graph = _from_eapig_pt(data, path)
        elif fmt == "eap-ig":
            circuit, file_graph = _from_eapig(json.loads(path.read_text()), path)
        else:
            circuit, file_graph = _from_native(json.loads(path.read_text()), path)
    except KeyError as error:
        raise CircuitFileError(f"{path} ({fmt} format) lacks the key {error}") from error
    if graph is not None:
        check_same_shape(file_graph, graph, path)
        if graph.d_model and not file_graph.d_model:
            file_graph = graph
    return circuit, file_graph
