"""Sparsity-faithfulness and runtime figures from a sweep's results table (PNG).

Figures are matplotlib `Figure` objects saved directly: no pyplot state and no backend chosen at
import, so a notebook that imports hap keeps its own. seaborn draws the figures with seed
uncertainty onto their axes.

Seed uncertainty is shown as the seeds' range (min to max, seaborn's `errorbar=("pi", 100)`),
never a confidence interval: a sweep has 2-5 seeds, where a bootstrap CI has only a handful of
distinct resamples (10 for 3 seeds) and so is degenerate, and a mean +- standard deviation
pretends to a normal spread and can fall below zero, off a log axis. The range is every seed's
outcome as observed, needs no random resampling (the plots are reproducible by construction),
and stays positive on the log axes of KL and time.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import seaborn as sns
from matplotlib import rcParams
from matplotlib.figure import Figure

METHOD_ORDER = ["eap", "eap-ig", "acdc", "ep", "hap", "ep-warm", "hap-warm"]
SEED_SPREAD = ("pi", 100)  # seaborn's errorbar: the 0-100 percentile interval, min to max
SPREAD_NAME = "the seeds' range (min-max)"


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
    return f"{task} on {model}; lines: mean over {seeds} seed(s), bands: {SPREAD_NAME}"


def _curve(
    table: pd.DataFrame,
    column: str,
    label: str,
    title: str,
    path: Path,
    log: bool,
    reference: float | None = None,
) -> None:
    """`column` against target sparsity, one seaborn line per method: the arithmetic mean over
    seeds at each sparsity, a band over the seeds' range. A log axis is set after drawing, so
    the line stays the arithmetic mean (seaborn averages in log space on an axis already log)."""
    fig = Figure(figsize=(7, 4.5))
    ax = fig.subplots()
    if reference is not None:
        ax.axhline(reference, color="grey", linestyle="--", linewidth=1, label="full model")
    methods = _methods(table)
    sns.lineplot(
        data=table,
        x="target_sparsity",
        y=column,
        hue="method",
        hue_order=methods,
        palette=_palette(methods),
        estimator="mean",
        errorbar=SEED_SPREAD,
        marker="o",
        ax=ax,
    )
    if log:
        ax.set_yscale("log")
    ax.set_xlabel("edge sparsity (fraction of edges removed)")
    ax.set_ylabel(label)
    ax.set_title(f"{title}\n{_subtitle(table)}", fontsize=10)
    ax.legend(title="method")
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def _runtime(table: pd.DataFrame, sparsity: float, path: Path) -> None:
    """Wall seconds per circuit at one target sparsity: per method a point at the mean over
    seeds with a bar over the seeds' range, and each seed as a dot."""
    at = table[(table["target_sparsity"] - sparsity).abs() < 1e-9]
    order = _methods(at)
    colors = _palette(_methods(table))  # the sweep curves' colours, even if a method is missing
    fig = Figure(figsize=(6, 4))
    ax = fig.subplots()
    common = dict(data=at, x="method", y="wall_s", hue="method", order=order, hue_order=order)
    sns.pointplot(
        **common,
        palette=colors,
        estimator="mean",
        errorbar=SEED_SPREAD,
        linestyle="none",
        markersize=7,
        capsize=0.2,
        err_kws={"linewidth": 1.2},
        legend=False,
        ax=ax,
    )
    sns.stripplot(  # over the bars, whose caps are the extreme seeds
        **common,
        palette=colors,
        size=4,
        jitter=0.12,
        edgecolor="white",
        linewidth=0.5,
        legend=False,
        ax=ax,
    )
    ax.set_yscale("log")  # after drawing: the point is the arithmetic mean
    ax.set_xlabel("method")
    ax.set_ylabel("wall time per circuit [s, log scale]")
    threads = ", ".join(str(t) for t in sorted(at["threads"].unique()))
    device = ", ".join(sorted(at["device"].unique()))
    ax.set_title(
        f"Discovery time at {sparsity:.0%} sparsity ({device}, {threads} threads)\n"
        f"large points: mean over {at['seed'].nunique()} seed(s), small: each seed\n"
        f"bars: {SPREAD_NAME}",
        fontsize=10,
    )
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def plot_all(table: pd.DataFrame, out_dir: Path, runtime_sparsity: float = 0.94) -> list[Path]:
    """The sweep's figures into `out_dir` from its results table (one row per method, task,
    sparsity and seed; the rows with status ok): KL and logit difference against sparsity (mean
    over seeds, band over their range), wall time per method at `runtime_sparsity` (mean, range
    bar, each seed), and HAP's time by stage if HAP ran. Returns the paths written."""
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

    _runtime(table, runtime_sparsity, paths[2])

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
    at each step budget, with bars over the seeds' range in both KL and time; methods without a
    budget as one point likewise; the equal-faithfulness level dashed; titled with both ratios and
    the equal-faithfulness ratio of each seed. `summary`: `hap frontier --json`'s object.

    matplotlib's errorbar, not seaborn: a point here is a (time, KL) pair averaged per budget, and
    seaborn's estimators aggregate one variable at each value of the other."""
    points = pd.DataFrame(summary["points"])
    points["steps"] = points["steps"].fillna(-1)  # a method without a step budget: one group
    fig = Figure(figsize=(7, 4.8))
    ax = fig.subplots()
    palette = _palette(_methods(points))
    for method in _methods(points):
        color = palette[method]
        rows = points[points["method"] == method]
        curve = rows.groupby("steps").agg(
            wall=("wall_s", "mean"),
            wall_lo=("wall_s", "min"),
            wall_hi=("wall_s", "max"),
            kl=("kl", "mean"),
            lo=("kl", "min"),
            hi=("kl", "max"),
        )
        budgeted = (curve.index >= 0).all()
        ax.errorbar(
            curve["wall"],
            curve["kl"],
            xerr=[curve["wall"] - curve["wall_lo"], curve["wall_hi"] - curve["wall"]],
            yerr=[curve["kl"] - curve["lo"], curve["hi"] - curve["kl"]],
            fmt="o-" if budgeted else "s",
            color=color,
            capsize=2,
            elinewidth=0.8,
            label=method if budgeted else f"{method} (no step budget)",
        )
        if not budgeted:
            continue
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

    def shown(ratio: float | None) -> str:
        return "not reached" if ratio is None else f"{ratio:.2f}"

    ax.set_title(
        f"{summary['task']} at {summary['target_sparsity']:.0%} sparsity on {summary['model']}: "
        f"HAP/EP time to equal faithfulness {shown(equal['ratio'])}, per step "
        f"{summary['per_step_slope_ratio']:.2f}\n"
        f"the same ratio per seed: {', '.join(shown(r) for r in equal['per_seed'])}\n"
        f"points: mean over {len(summary['seeds'])} seeds at each step budget (labels), "
        f"bars: {SPREAD_NAME}",
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
