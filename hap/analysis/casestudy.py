"""The IOI case study over a sweep's circuits: exact edge effects, ranking quality, head roles
and which methods keep them, stability across seeds and methods, and circuit diagrams.

Reads the sweep's results CSV and the circuits it wrote (`hap bench --circuits`); computes the
exact per-edge effects and the head roles on the validation split of seed 0 (hap.analysis.exact,
hap.analysis.roles); writes tables (CSV) and figures. Every method is read the same way: its circuit at
each target sparsity and seed, and its edge scores (|score| for EAP / EAP-IG, log-alpha for EP /
HAP, -inf outside HAP's candidates).
"""

from __future__ import annotations

import itertools
from dataclasses import asdict
from pathlib import Path

import pandas as pd
import torch
from matplotlib.figure import Figure

from hap.analysis.draw import draw_circuits
from hap.analysis.exact import EdgeEffects, average_precision, edge_effects, roc_auc, top_k
from hap.analysis.roles import ROLE_ORDER, find_roles, heads_in_circuit, write_roles
from hap.engine.graph import Graph
from hap.experiments.registry import BACKENDS, get_backend
from hap.io.circuit import Circuit
from hap.io.formats import read_circuit
from hap.search.selection import edges_for_sparsity

DIAGRAM_METHODS = ("eap", "ep", "hap")


def load_circuits(table: pd.DataFrame, folder: Path, graph: Graph) -> dict[tuple, Circuit]:
    """(method, target sparsity, seed) -> circuit, for every ok row whose circuit file exists."""
    out = {}
    for row in table[table["status"] == "ok"].itertuples():
        path = folder / f"{row.run_key}.json"
        if path.exists():
            out[(row.method, round(float(row.target_sparsity), 6), int(row.seed))] = read_circuit(
                path, graph
            )[0]
    return out


def _ranking_scores(circuit: Circuit) -> torch.Tensor:
    scores = circuit.scores.float()
    # mask learners' scores are log-alphas: a strongly pruned edge is very negative, not strong
    learned = get_backend(circuit.method).learns_masks if circuit.method in BACKENDS else False
    return scores if learned else scores.abs()


def ranking_quality(
    circuits: dict[tuple, Circuit], effects: EdgeEffects, graph: Graph
) -> pd.DataFrame:
    """Per method and sparsity (means over seeds): ROC AUC and average precision of the method's
    edge scores against the top-k exact edges (k = the sparsity's edge budget, by exact KL
    effect), and the recall of those k edges by the method's circuit."""
    rows = []
    importance = effects.importance()
    for (method, sparsity, seed), circuit in sorted(circuits.items()):
        k = edges_for_sparsity(graph, sparsity)
        truth = top_k(importance, k)
        scores = _ranking_scores(circuit) if circuit.scores is not None else None
        rows.append(
            {
                "method": method,
                "target_sparsity": sparsity,
                "seed": seed,
                "k": k,
                "roc_auc": roc_auc(scores, truth) if scores is not None else float("nan"),
                "average_precision": (
                    average_precision(scores, truth) if scores is not None else float("nan")
                ),
                "recall": float((circuit.mask & truth).sum()) / k,
            }
        )
    table = pd.DataFrame(rows)
    return (
        table.groupby(["method", "target_sparsity"])[
            ["k", "roc_auc", "average_precision", "recall"]
        ]
        .mean()
        .reset_index()
    )


def role_coverage(
    circuits: dict[tuple, Circuit], roles: pd.DataFrame, graph: Graph
) -> pd.DataFrame:
    """Per method and sparsity, for each role: the role's heads in the circuit (a head counts
    when it has a kept in- and out-edge) with the number of seeds that keep it, e.g.
    "a1.h0 3/3"."""
    by_role = {
        role: [r.head for r in roles.itertuples() if role in str(r.roles).split("; ")]
        for role in ROLE_ORDER
    }
    by_role = {role: heads for role, heads in by_role.items() if heads}
    groups: dict[tuple, list[set[str]]] = {}
    for (method, sparsity, _seed), circuit in sorted(circuits.items()):
        groups.setdefault((method, sparsity), []).append(heads_in_circuit(graph, circuit.mask))
    rows = []
    for (method, sparsity), kept in groups.items():
        row = {"method": method, "target_sparsity": sparsity, "seeds": len(kept)}
        for role, heads in by_role.items():
            cells = [f"{h} {sum(h in k for k in kept)}/{len(kept)}" for h in heads]
            row[role] = ", ".join(cells)
            row[f"{role} kept"] = sum(sum(h in k for k in kept) for h in heads) / (
                len(heads) * len(kept)
            )
        rows.append(row)
    return pd.DataFrame(rows)


def iou(a: torch.Tensor, b: torch.Tensor) -> float:
    union = int((a | b).sum())
    return float((a & b).sum()) / union if union else 1.0


def stability(circuits: dict[tuple, Circuit]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(across seeds, across methods): mean pairwise IoU of circuits of one method and sparsity
    over seed pairs; and, per sparsity and method pair, the mean IoU of their circuits of the
    same seed."""
    seeds_rows, methods_rows = [], []
    keys = sorted(circuits)
    methods = sorted({m for m, _, _ in keys})
    sparsities = sorted({s for _, s, _ in keys})
    for method, sparsity in itertools.product(methods, sparsities):
        masks = [circuits[k].mask for k in keys if k[0] == method and k[1] == sparsity]
        pairs = [iou(a, b) for a, b in itertools.combinations(masks, 2)]
        if pairs:
            seeds_rows.append(
                {
                    "method": method,
                    "target_sparsity": sparsity,
                    "pairs": len(pairs),
                    "iou_mean": sum(pairs) / len(pairs),
                    "iou_min": min(pairs),
                    "iou_max": max(pairs),
                }
            )
    for sparsity in sparsities:
        for a, b in itertools.product(methods, methods):
            values = [
                iou(circuits[(a, sparsity, s)].mask, circuits[(b, sparsity, s)].mask)
                for (m, sp, s) in keys
                if m == a and sp == sparsity and (b, sparsity, s) in circuits
            ]
            if values:
                methods_rows.append(
                    {
                        "target_sparsity": sparsity,
                        "method_a": a,
                        "method_b": b,
                        "iou": sum(values) / len(values),
                    }
                )
    return pd.DataFrame(seeds_rows), pd.DataFrame(methods_rows)


def plot_iou(seeds: pd.DataFrame, methods: pd.DataFrame, sparsity: float, path: Path) -> Path:
    """Left: IoU across methods at `sparsity` (same seed, mean over seeds); right: IoU across
    seeds per method and sparsity."""
    fig = Figure(figsize=(11, 4.5))
    left, right = fig.subplots(1, 2)
    at = methods[(methods["target_sparsity"] - sparsity).abs() < 1e-9]
    grid = at.pivot(index="method_a", columns="method_b", values="iou")
    image = left.imshow(grid.values, vmin=0, vmax=1, cmap="viridis")
    left.set_xticks(range(len(grid.columns)), grid.columns)
    left.set_yticks(range(len(grid.index)), grid.index)
    for i, j in itertools.product(range(len(grid.index)), range(len(grid.columns))):
        left.text(j, i, f"{grid.values[i, j]:.2f}", ha="center", va="center", color="white")
    left.set_title(f"IoU across methods at {sparsity:.0%} (same seed, mean)", fontsize=9)
    fig.colorbar(image, ax=left)
    if len(seeds):
        per = seeds.pivot(index="method", columns="target_sparsity", values="iou_mean")
        image = right.imshow(per.values, vmin=0, vmax=1, cmap="viridis", aspect="auto")
        right.set_xticks(range(len(per.columns)), [f"{c:.0%}" for c in per.columns])
        right.set_yticks(range(len(per.index)), per.index)
        for i, j in itertools.product(range(len(per.index)), range(len(per.columns))):
            right.text(j, i, f"{per.values[i, j]:.2f}", ha="center", va="center", color="white")
        fig.colorbar(image, ax=right)
    else:
        right.text(0.5, 0.5, "one seed: no pairs to compare", ha="center", va="center")
        right.set_axis_off()
    right.set_title("IoU across seeds (mean over seed pairs)", fontsize=9)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    return path


def run_case_study(
    model, graph: Graph, task, table: pd.DataFrame, circuits_dir: Path, out: Path, plots: Path
) -> dict:
    """Every table and figure of the case study (module docstring); returns what it wrote."""
    effects = edge_effects(model, graph, task.val)
    roles = find_roles(model, graph, task.val, effects.d_logit_diff)
    out.mkdir(parents=True, exist_ok=True)
    write_roles(roles, out / "roles.csv")
    roles_table = pd.DataFrame([asdict(r) for r in roles])
    names = graph.edge_names()
    pd.DataFrame(
        {
            "edge": names,
            "d_kl": effects.d_kl.tolist(),
            "d_logit_diff": effects.d_logit_diff.tolist(),
        }
    ).sort_values("d_kl", ascending=False).to_csv(out / "exact_effects.csv", index=False)
    circuits = load_circuits(table, circuits_dir, graph)
    ranking = ranking_quality(circuits, effects, graph)
    coverage = role_coverage(circuits, roles_table, graph)
    seeds, methods = stability(circuits)
    for name, frame in (
        ("ranking_quality.csv", ranking),
        ("role_coverage.csv", coverage),
        ("iou_seeds.csv", seeds),
        ("iou_methods.csv", methods),
    ):
        frame.round(4).to_csv(out / name, index=False)
    written = [out / n for n in ("roles.csv", "exact_effects.csv", "ranking_quality.csv")]
    written += [out / n for n in ("role_coverage.csv", "iou_seeds.csv", "iou_methods.csv")]
    diagram_sparsity = 0.94
    if len(methods):
        written.append(plot_iou(seeds, methods, diagram_sparsity, plots / "iou.png"))
    panels = [
        (f"{m} at {diagram_sparsity:.0%} (seed 0): {circuits[k].n_edges} edges", circuits[k])
        for m in DIAGRAM_METHODS
        if (k := (m, diagram_sparsity, 0)) in circuits
    ]
    if panels:
        head_roles = {r.head: r.roles.split("; ")[0] for r in roles if r.roles}
        written.append(
            draw_circuits(
                panels,
                graph,
                plots / "circuits_94.png",
                head_roles,
                suptitle="IOI circuits on the default model, nodes coloured by measured role",
            )
        )
    return {
        "exact_effects_key": effects.key,
        "circuits": len(circuits),
        "written": [str(p) for p in written],
    }


def case_study_of_sweep(
    results: Path, circuits: Path | None, out: Path, plots: Path, device: str | None = None
) -> dict:
    """The case study over a sweep's results file and circuits folder: its model loaded, and
    seed 0's task rebuilt with the sweep's own split sizes (hap.experiments.runs.build_task)."""
    from hap.errors import UserError
    from hap.experiments.results import read_results
    from hap.experiments.runs import Split, build_task, load_model_at
    from hap.models import DEFAULT_MODEL_NAME

    table = read_results(results)
    table = table[table["task"] == "ioi"]
    if not len(table):
        raise UserError(f"{results} has no IOI rows: run hap bench --out {results} first")
    models = sorted(set(table["model"]))
    if len(models) != 1:
        raise UserError(f"{results} mixes models {models}; give one model's sweep")
    circuits = circuits or results.parent / "circuits"
    if not circuits.is_dir():
        raise UserError(f"no circuits folder {circuits}: run hap bench with --circuits {circuits}")
    precisions = sorted(set(table["precision"])) if "precision" in table else ["fp32"]
    if len(precisions) != 1:
        raise UserError(f"{results} mixes precisions {precisions}; give one precision's sweep")
    name = None if models[0] == DEFAULT_MODEL_NAME else models[0]
    model = load_model_at(name, device, precisions[0])
    graph = Graph.from_model(model)
    sizes = table.iloc[0]  # seed 0's validation split, as the sweep drew it
    split = Split(int(sizes["n_train"]), int(sizes["n_val"]), int(sizes["n_test"]))
    task = build_task(model, "ioi", 0, split)
    return run_case_study(model, graph, task, table, circuits, out, plots)
