"""Sparsity-faithfulness and runtime figures from a sweep's results table (PNG).

Figures are matplotlib `Figure` objects saved directly: no pyplot state and no backend chosen at
import, so a notebook that imports hap keeps its own.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
from matplotlib import rcParams
from matplotlib.figure import Figure

METHOD_ORDER = ["eap", "eap-ig", "acdc", "ep", "hap"]


def _palette(methods: list[str]) -> dict[str, str]:
    """One colour per method, in METHOD_ORDER, from matplotlib's default cycle."""
    cycle = rcParams["axes.prop_cycle"].by_key()["color"]
    order = [m for m in METHOD_ORDER if m in methods] + sorted(set(methods) - set(METHOD_ORDER))
    return {m: cycle[i % len(cycle)] for i, m in enumerate(order)}


def _methods(table: pd.DataFrame) -> list[str]:
    present = set(table["method"])
    return [m for m in METHOD_ORDER if m in present] + sorted(present - set(METHOD_ORDER))


def _subtitle(table: pd.DataFrame) -> str:
    names = sorted({Path(str(t).split("@")[0]).name for t in table["task"].unique()})
    model, task = table["model"].iloc[0], ", ".join(names)  # a task file by its name, not its path
    seeds = table["seed"].nunique()
    return f"{task} on {model}; lines: mean over {seeds} seed(s), bands: min-max"


def _curve(
    table: pd.DataFrame,
    column: str,
    label: str,
    title: str,
    path: Path,
    log: bool,
    reference: float | None = None,
) -> None:
    fig = Figure(figsize=(7, 4.5))
    ax = fig.subplots()
    if reference is not None:
        ax.axhline(reference, color="grey", linestyle="--", linewidth=1, label="full model")
    colors = _palette(_methods(table))
    for method in _methods(table):
        band = table[table["method"] == method].groupby("target_sparsity")[column]
        stats = band.agg(["mean", "min", "max"])
        ax.plot(stats.index, stats["mean"], marker="o", color=colors[method], label=method)
        ax.fill_between(stats.index, stats["min"], stats["max"], color=colors[method], alpha=0.2)
    if log:
        ax.set_yscale("log")
    ax.set_xlabel("edge sparsity (fraction of edges removed)")
    ax.set_ylabel(label)
    ax.set_title(f"{title}\n{_subtitle(table)}", fontsize=10)
    ax.legend(title="method")
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def plot_all(table: pd.DataFrame, out_dir: Path, runtime_sparsity: float = 0.94) -> list[Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = [
        out_dir / n
        for n in (
            "kl_vs_sparsity.png",
            "logit_diff_vs_sparsity.png",
            "runtime.png",
            "hap_stages.png",
        )
    ]
    _curve(
        table,
        "kl",
        "KL(full model || circuit) [nats, log scale]",
        "Faithfulness: KL divergence from the full model (lower is better)",
        paths[0],
        log=True,
    )
    _curve(
        table,
        "logit_diff",
        "logit difference, answer - distractor [logits]",
        "Task behaviour kept by the circuit (higher is better)",
        paths[1],
        log=False,
        reference=float(table["full_logit_diff"].mean()),
    )

    at = table[(table["target_sparsity"] - runtime_sparsity).abs() < 1e-9]
    fig = Figure(figsize=(6, 4))
    ax = fig.subplots()
    order = _methods(at)
    walls = at.groupby("method")["wall_s"].agg(["mean", "std"]).reindex(order)
    colors = _palette(order)
    ax.bar(
        order,
        walls["mean"],
        yerr=walls["std"].fillna(0),
        color=[colors[m] for m in order],
        capsize=4,
    )
    ax.set_yscale("log")
    ax.set_xlabel("method")
    ax.set_ylabel("wall time per circuit [s, log scale]")
    threads = ", ".join(str(t) for t in sorted(at["threads"].unique()))
    device = ", ".join(sorted(at["device"].unique()))
    ax.set_title(
        f"Discovery time at {runtime_sparsity:.0%} sparsity ({device}, {threads} threads)\n"
        f"bars: mean over seeds, whiskers: standard deviation",
        fontsize=10,
    )
    fig.tight_layout()
    fig.savefig(paths[2], dpi=120)

    hap = table[table["method"] == "hap"].groupby("target_sparsity")[["attribution_s", "pruning_s"]]
    stages = hap.mean()
    if stages.empty:  # no HAP run in this sweep: no stage plot (rather than an empty one)
        return paths[:3]
    fig = Figure(figsize=(6, 4))
    ax = fig.subplots()
    labels = [f"{s:.0%}" for s in stages.index]
    ax.bar(labels, stages["attribution_s"], label="stage 1: EAP attribution")
    ax.bar(
        labels,
        stages["pruning_s"],
        bottom=stages["attribution_s"],
        label="stage 2: pruning inside the candidates",
    )
    ax.set_xlabel("target edge sparsity")
    ax.set_ylabel("wall time [s]")
    ax.set_title("HAP's time by stage (mean over seeds)", fontsize=10)
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.2), ncol=2, fontsize=8)
    fig.tight_layout()
    fig.savefig(paths[3], dpi=120)
    return paths


def plot_frontier(summary: dict, path: Path) -> Path:
    """Test KL (log) against wall seconds (log): one line per method through its mean over seeds
    at each step budget, a band over the seeds' min-max KL, methods without a budget as points;
    the equal-faithfulness level dashed; titled with both ratios. `summary`: `hap frontier
    --json`'s object."""
    points = pd.DataFrame(summary["points"])
    fig = Figure(figsize=(7, 4.8))
    ax = fig.subplots()
    palette = _palette(_methods(points))
    for method, rows in points.groupby("method"):
        color = palette[method]
        if rows["steps"].isna().all():
            ax.errorbar(
                rows["wall_s"].mean(),
                rows["kl"].mean(),
                yerr=[
                    [rows["kl"].mean() - rows["kl"].min()],
                    [rows["kl"].max() - rows["kl"].mean()],
                ],
                fmt="s",
                color=color,
                label=f"{method} (no step budget)",
            )
            continue
        curve = rows.groupby("steps").agg(
            wall=("wall_s", "mean"), kl=("kl", "mean"), lo=("kl", "min"), hi=("kl", "max")
        )
        ax.plot(curve["wall"], curve["kl"], marker="o", color=color, label=method)
        ax.fill_between(curve["wall"], curve["lo"], curve["hi"], color=color, alpha=0.2)
        for steps, row in curve.iterrows():
            ax.annotate(
                f"{int(steps)}",
                (row["wall"], row["kl"]),
                fontsize=7,
                color=color,
                textcoords="offset points",
                xytext=(3, 4),
            )
    equal = summary["equal_faithfulness"]
    ax.axhline(
        equal["level"],
        color="grey",
        linestyle="--",
        linewidth=1,
        label=f"reference: EP's best mean KL x 1.05 = {equal['level']:.3f}",
    )
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel(
        f"wall time per circuit [s, log] ({summary['device']}, {summary['threads']} threads)"
    )
    ax.set_ylabel("test KL(full || circuit) [nats, log]")
    ratio = equal["ratio"]
    shown = "not reached" if ratio is None else f"{ratio:.2f}"
    ax.set_title(
        f"{summary['task']} at {summary['target_sparsity']:.0%} sparsity on {summary['model']}: "
        f"HAP/EP time to equal faithfulness {shown}, per step {summary['per_step_slope_ratio']:.2f}\n"
        f"lines: mean over {len(summary['seeds'])} seeds at each step budget (labels), "
        f"bands: min-max",
        fontsize=9,
    )
    ax.legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    return path


def plot_mib(summary: dict, path: Path) -> Path:
    """Faithfulness against the fraction of edges kept (log x), one line per method: left the
    curves CPR integrates (signed ranking, or the learned circuits), right |1 - f| of the ones
    CMD integrates (absolute ranking, or the learned circuits). `summary`: `hap mib --json`."""
    points = pd.DataFrame(summary["points"])
    points = points[points["status"] == "ok"]
    methods = _methods(points)
    colors = _palette(methods)
    fig = Figure(figsize=(11, 4.5))
    left, right = fig.subplots(1, 2)
    panels = (
        (left, "signed", "faithfulness f", lambda f: f, "cpr", "CPR"),
        (right, "absolute", "|1 - f|", lambda f: (1 - f).abs(), "cmd", "CMD"),
    )
    for ax, ranking, label, value, key, name in panels:
        for method in methods:
            rows = points[
                (points["method"] == method) & points["ranking"].isin([ranking, "learned"])
            ].sort_values("fraction")
            area = summary["areas"][method][key]
            shown = "failed" if area is None else f"{area:.3f}"
            ax.plot(
                rows["fraction"],
                value(rows["faithfulness"]),
                marker="o",
                color=colors[method],
                label=f"{method} ({name} {shown})",
            )
        ax.set_xscale("log")
        ax.set_xlabel("fraction of edges kept (log)")
        ax.set_ylabel(label)
        ax.axhline(1.0 if key == "cpr" else 0.0, color="grey", linestyle="--", linewidth=1)
        ax.legend(fontsize=8)
        ax.set_title(
            f"{name}: {'signed' if key == 'cpr' else 'absolute'} ranking for scoring methods",
            fontsize=9,
        )
    fig.suptitle(
        f"MIB's grid on {summary['task']} / {summary['model']} ({summary['n_graph_edges']:,} "
        f"edges), seed {summary['seed']}, {summary['ablation']} ablation",
        fontsize=10,
    )
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    return path
