"""The README's result tables, printed as Markdown from the committed result files, so that every
figure the README shows comes from a file (python benchmarks/readme_tables.py [results/reference])."""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import pandas as pd

from hap.experiments.results import read_results
from hap.experiments.summary import swept_areas


def sweep_table(path: Path) -> str:
    table = read_results(path)
    table = table[table["status"] == "ok"]
    columns = [
        "live_edges",
        "sparsity",
        "steps",
        "kl",
        "logit_diff",
        "accuracy",
        "faithfulness",
        "wall_s",
    ]
    means = table.groupby(["method", "target_sparsity"])[columns].mean().reset_index()
    lines = [
        "| method | target | live edges | sparsity | steps | KL | logit diff | acc | faithfulness | wall s |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for _, r in means.iterrows():
        steps = "-" if pd.isna(r["steps"]) else f"{r['steps']:.0f}"
        lines.append(
            f"| {r['method']} | {r['target_sparsity']} | {r['live_edges']:.0f} | {r['sparsity']:.3f} "
            f"| {steps} | {r['kl']:.3f} | {r['logit_diff']:.2f} | {r['accuracy']:.3f} "
            f"| {r['faithfulness']:.3f} | {r['wall_s']:.1f} |"
        )
    areas = swept_areas(table)
    lines.append("")
    lines.append(
        "areas over the swept sparsities (faithfulness / gap): "
        + ", ".join(
            f"{r['method']} {r['faith_area']:.3f} / {r['gap_area']:.3f}"
            for _, r in areas.iterrows()
        )
    )
    lines.append(f"full model's logit difference {table['full_logit_diff'].mean():.2f}")
    return "\n".join(lines)


def selection_table(refill: Path, topn: Path) -> str:
    """EAP and EAP-IG under MIB's top-n-then-prune and under the default refill (KL /
    faithfulness, live edges in brackets), at 96-99%."""
    means = {}
    for name, path in (("topn", topn), ("refill", refill)):
        table = read_results(path)
        table = table[(table["status"] == "ok") & table["method"].isin(["eap", "eap-ig"])]
        columns = ["kl", "faithfulness", "live_edges"]
        means[name] = table.groupby(["method", "target_sparsity"])[columns].mean()
    lines = [
        "| target | EAP topn | EAP refill | EAP-IG topn | EAP-IG refill |",
        "|---|---|---|---|---|",
    ]
    for target in (0.96, 0.98, 0.99):
        cells = []
        for method in ("eap", "eap-ig"):
            for name in ("topn", "refill"):
                r = means[name].loc[(method, target)]
                cells.append(f"{r['kl']:.2f} / {r['faithfulness']:.2f} ({r['live_edges']:.1f})")
        lines.append(f"| {target:.0%} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _show(x) -> str:
    return "not reached" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.3f}"


def frontier_table(path: Path) -> str:
    data = json.loads(path.read_text())
    points = pd.DataFrame(data["points"])
    lines = [
        "| method | steps | wall s | test KL | KL min-max | logit diff | faithfulness |",
        "|---|---|---|---|---|---|---|",
    ]
    points["steps"] = points["steps"].fillna(-1)
    for (method, steps), group in points.groupby(["method", "steps"]):
        kl = group["kl"]
        lines.append(
            f"| {method} | {'-' if steps < 0 else int(steps)} | {group['wall_s'].mean():.2f} "
            f"| {kl.mean():.3f} | {kl.min():.3f}-{kl.max():.3f} | {group['logit_diff'].mean():.2f} "
            f"| {group['faithfulness'].mean():.3f} |"
        )
    equal = data["equal_faithfulness"]
    ratio = data.get("per_step_slope_ratio", data.get("per_step_ratio"))
    lines.append("")
    lines.append(
        f"per-step cost ratio HAP/EP **{ratio:.3f}**; reference level {equal['level']:.3f} (EP's "
        f"best mean x 1.05): EP reaches it in {_show(equal['reference_s'])} s, HAP in "
        f"{_show(equal['method_s'])} s; equal-faithfulness ratio **{_show(equal['ratio'])}** "
        f"(per seed: {', '.join(_show(r) for r in equal['per_seed'])})"
    )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("folder", nargs="?", type=Path, default=Path("results/reference"))
    args = parser.parse_args()
    print("## sweep\n")
    print(sweep_table(args.folder / "sweep.csv"))
    topn = args.folder / "selection_topn" / "sweep.csv"
    if topn.exists():
        print("\n## selection\n")
        print(selection_table(args.folder / "sweep.csv", topn))
    for frontier in sorted(args.folder.glob("frontier_*.json")):
        print(f"\n## {frontier.name}\n")
        print(frontier_table(frontier))


if __name__ == "__main__":
    main()
