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
from pathlib import Path

import torch
from torch import Tensor

from hap.engine.graph import Graph, edge_count
from hap.errors import UserError
from hap.io.atomic import atomic_write
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
        "parallel_attn_mlp": graph.parallel,
        "d_model": graph.d_model,
    }


def to_native(circuit: Circuit, graph: Graph) -> dict:
    names = graph.edge_names()
    scores = None if circuit.scores is None else circuit.scores.tolist()
    return {
        "format": NATIVE_TAG,
        "graph": _cfg(graph),
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


MAX_LAYERS = 1_000
MAX_HEADS = 1_000
MAX_EDGES = 100_000_000  # a graph this size needs gigabytes per edge-sized tensor


def _brief(value, width: int = 40) -> str:
    """`value`'s repr, cut to `width` characters for a one-line message."""
    text = repr(value)
    return text if len(text) <= width else text[: width - 3] + "..."


def _whole(value, key: str, path: Path, where: str) -> int:
    """`value` as an int, refused unless it is a whole number (JSON 4 or 4.0, not "4" or 4.5)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise CircuitFileError(
            f"{path}: {where}{key} must be a whole number, got {_brief(value)} "
            f"({type(value).__name__})"
        )
    if isinstance(value, float) and not value.is_integer():
        raise CircuitFileError(f"{path}: {where}{key} must be a whole number, got {value!r}")
    return int(value)


def _graph_from_cfg(cfg, path: Path, where: str = "cfg.") -> Graph:
    """The graph a file's config declares, its shape bounded before anything is allocated."""
    if not isinstance(cfg, dict):
        raise CircuitFileError(
            f"{path}: {where.rstrip('.')} must be an object with n_layers and n_heads, got "
            f"{type(cfg).__name__}"
        )
    missing = [key for key in ("n_layers", "n_heads") if key not in cfg]
    if missing:
        raise CircuitFileError(
            f"{path}: its {where.rstrip('.')} needs integer n_layers and n_heads "
            f"(missing {', '.join(missing)})"
        )
    n_layers = _whole(cfg["n_layers"], "n_layers", path, where)
    n_heads = _whole(cfg["n_heads"], "n_heads", path, where)
    d_model = cfg.get("d_model")
    d_model = None if d_model is None else _whole(d_model, "d_model", path, where)
    parallel = cfg.get("parallel_attn_mlp", False)
    if not isinstance(parallel, bool):
        raise CircuitFileError(
            f"{path}: {where}parallel_attn_mlp must be true or false, got {_brief(parallel)}"
        )
    if not (1 <= n_layers <= MAX_LAYERS and 1 <= n_heads <= MAX_HEADS):
        raise CircuitFileError(
            f"{path}: {where}n_layers={n_layers}, n_heads={n_heads} is no model's graph: "
            f"n_layers must be in [1, {MAX_LAYERS:,}] and n_heads in [1, {MAX_HEADS:,}]"
        )
    if d_model is not None and d_model < 1:
        raise CircuitFileError(f"{path}: {where}d_model={d_model} must be positive")
    n_edges = edge_count(n_layers, n_heads, parallel=parallel)
    if n_edges > MAX_EDGES:
        raise CircuitFileError(
            f"{path}: {where}n_layers={n_layers}, n_heads={n_heads} declares a graph of "
            f"{n_edges:,} edges; hap reads circuits of at most {MAX_EDGES:,} edges"
        )
    return Graph(n_layers, n_heads, d_model, parallel=parallel)


def check_same_shape(file_graph: Graph, graph: Graph, path: str | Path) -> None:
    """Refuse a circuit made for another graph, naming both shapes."""
    same = (file_graph.n_layers, file_graph.n_heads, file_graph.parallel) == (
        graph.n_layers,
        graph.n_heads,
        graph.parallel,
    )
    if same and file_graph.d_model and graph.d_model:
        same = file_graph.d_model == graph.d_model
    if not same:
        raise CircuitFileError(
            f"{path} is a circuit for {file_graph.shape()}, but the model's graph is "
            f"{graph.shape()}: pass the --model it was made for"
        )


_JSON_NAMES = {
    str: "a string",
    int: "an integer",
    float: "a number",
    dict: "an object",
    bool: "true or false",
    type(None): "null",
}
_EXTRA_TYPES = {
    "method": (str,),
    "target_sparsity": (float, int),
    "seed": (int,),
    "config": (dict,),
    "steps": (int, type(None)),
    "details": (dict,),
    "timings": (dict,),
    "has_scores": (bool,),
}


def _circuit(
    graph: Graph, mask: Tensor, scores: Tensor | None, extra, path: Path, where: str
) -> Circuit:
    """The circuit with the records hap keeps beside the mask (`extra`, from the file's `where`),
    each of the type a Circuit holds."""
    if not isinstance(extra, dict):
        raise CircuitFileError(
            f"{path}: {where.rstrip('.')} must be an object, got {type(extra).__name__}"
        )
    for key, types in _EXTRA_TYPES.items():
        value = extra.get(key)
        if key in extra and (
            isinstance(value, bool) and bool not in types or not isinstance(value, types)
        ):
            kinds = " or ".join(_JSON_NAMES[t] for t in types)
            raise CircuitFileError(
                f"{path}: {where}{key} must be {kinds}, got {_brief(value)} "
                f"({type(value).__name__})"
            )
    return Circuit(
        method=extra.get("method", "imported"),
        mask=mask,
        target_sparsity=float(extra.get("target_sparsity", graph.sparsity(mask))),
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


def _score(value, path: Path, what: str) -> float:
    """A score from a JSON file: a number (JSON's Infinity / NaN included) or null (NaN)."""
    if value is None:
        return math.nan
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise CircuitFileError(
            f"{path}: {what} must be a number or null, got {_brief(value)} ({type(value).__name__})"
        )
    return float(value)


def _edges(data: dict, path: Path, what: str) -> dict:
    edges = data["edges"]
    if not isinstance(edges, dict):
        raise CircuitFileError(
            f"{path}: 'edges' must be an object mapping edge names to {what}, got "
            f"{type(edges).__name__}"
        )
    return edges


def _from_eapig(data: dict, path: Path) -> tuple[Circuit, Graph]:
    graph = _graph_from_cfg(data["cfg"], path)
    edges = _edges(data, path, "{score, in_graph}")
    rows = _rows(edges, graph, path)
    mask = torch.zeros(graph.n_edges, dtype=torch.bool)
    scores = torch.full((graph.n_edges,), math.nan)
    flags, values = [], []
    for name, edge in edges.items():
        if not isinstance(edge, dict) or "in_graph" not in edge:
            raise CircuitFileError(
                f"{path}: every edge needs an in_graph flag and a numeric score; edge {name!r} "
                f"is {_brief(edge)}"
            )
        flag = edge["in_graph"]
        if not isinstance(flag, bool) and flag not in (0, 1):
            raise CircuitFileError(
                f"{path}: edge {name!r} has in_graph {_brief(flag)}; every edge needs an in_graph "
                "flag true or false"
            )
        flags.append(bool(flag))
        values.append(_score(edge.get("score"), path, f"the score of edge {name!r}"))
    mask[rows] = torch.tensor(flags, dtype=torch.bool)
    scores[rows] = torch.tensor(values, dtype=torch.float32)
    return _circuit(graph, mask, scores, data.get("hap", {}), path, "hap."), graph


def _tensor(data: dict, key: str, expected: tuple[int, int], graph: Graph, path: Path) -> Tensor:
    value = data[key]
    if not isinstance(value, Tensor):
        raise CircuitFileError(
            f"{path}: {key} must be a tensor {expected}, got {type(value).__name__}"
        )
    if tuple(value.shape) != expected:
        raise CircuitFileError(
            f"{path}: {key} is {tuple(value.shape)}, the {graph.shape()} graph needs {expected}"
        )
    if value.is_complex():
        raise CircuitFileError(f"{path}: {key} holds complex numbers ({value.dtype})")
    return value


def _names(data: dict, key: str, expected: list[str], path: Path) -> None:
    if key not in data:
        return
    names = data[key]
    if not isinstance(names, list | tuple | dict) or list(names) != expected:
        raise CircuitFileError(
            f"{path}: its {key} are not the {len(expected)} node names in EAP-IG's order "
            f"(expected {expected[:3]}...)"
        )


def _from_eapig_pt(data: dict, path: Path) -> tuple[Circuit, Graph]:
    graph = _graph_from_cfg(data["cfg"], path)
    expected = (graph.n_senders, graph.n_receivers)
    in_graph = _tensor(data, "edges_in_graph", expected, graph, path)
    edge_scores = _tensor(data, "edges_scores", expected, graph, path)
    if in_graph.dtype != torch.bool and not ((in_graph == 0) | (in_graph == 1)).all():
        raise CircuitFileError(
            f"{path}: edges_in_graph must be booleans (or 0 / 1), got other {in_graph.dtype} values"
        )
    _names(data, "dst_nodes", graph.receiver_names, path)
    in_graph = in_graph.bool()
    if (in_graph & ~graph.valid).any():
        raise CircuitFileError(f"{path} keeps edges that do not exist (sender after receiver)")
    mask = graph.edges_of(in_graph)
    scores = graph.edges_of(edge_scores.to(torch.float32))
    return _circuit(graph, mask, scores, data.get("hap", {}), path, "hap."), graph


def _from_native(data: dict, path: Path) -> tuple[Circuit, Graph]:
    graph = _graph_from_cfg(data["graph"], path, where="graph.")
    edges = _edges(data, path, "their scores (or null)")
    rows = _rows(edges, graph, path)
    mask = torch.zeros(graph.n_edges, dtype=torch.bool)
    mask[rows] = True
    scores = data.get("scores")
    if scores is not None:
        if not isinstance(scores, list):
            raise CircuitFileError(
                f"{path}: 'scores' must be a list of {graph.n_edges} numbers, got "
                f"{type(scores).__name__}"
            )
        if len(scores) != graph.n_edges:
            raise CircuitFileError(f"{path}: {len(scores)} scores for {graph.n_edges} edges")
        values = [_score(s, path, f"scores[{i}]") for i, s in enumerate(scores)]
        scores = torch.tensor(values, dtype=torch.float32)
    elif any(v is not None for v in edges.values()):  # files written before "scores"
        scores = torch.full((graph.n_edges,), math.nan)
        for row, (name, value) in zip(rows, edges.items()):
            scores[row] = _score(value, path, f"the score of edge {name!r}")
    else:
        for name, value in edges.items():
            _score(value, path, f"the score of edge {name!r}")
    extra = {**data, "has_scores": scores is not None}
    return _circuit(graph, mask, scores, extra, path, ""), graph


def detect_format(path: str | Path) -> str:
    """Which of FORMATS the file at `path` is in (by content, not name)."""
    path = Path(path)
    try:
        with open(path, "rb") as f:
            head = f.read(64)
    except OSError as error:
        raise CircuitFileError(
            f"circuit file {path} cannot be read ({error.strerror or type(error).__name__})"
        ) from error
    if head[:2] == b"PK" or head[:1] == b"\x80":  # torch.save's zip archive, or a raw pickle
        return "eap-ig-pt"
    try:
        data = json.loads(path.read_text())
    except RecursionError as error:
        raise CircuitFileError(f"{path} is JSON nested too deeply to be a circuit") from error
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
                raise CircuitFileError(
                    f"{path} holds a {type(data).__name__}, not EAP-IG's graph dict (cfg, "
                    "edges_scores, edges_in_graph, ...)"
                )
            circuit, file_graph = _from_eapig_pt(data, path)
        elif fmt == "eap-ig":
            circuit, file_graph = _from_eapig(json.loads(path.read_text()), path)
        else:
            circuit, file_graph = _from_native(json.loads(path.read_text()), path)
    except KeyError as error:
        raise CircuitFileError(f"{path} ({fmt} format) lacks the key {error}") from error
    except RecursionError as error:
        raise CircuitFileError(f"{path} is nested too deeply to be a circuit") from error
    if graph is not None:
        check_same_shape(file_graph, graph, path)
        if graph.d_model and not file_graph.d_model:
            file_graph = graph
    return circuit, file_graph
