"""The result tables the README shows, generated from committed result files, so that no figure
in the README can disagree with its data: `hap report` writes them as Markdown (and a
self-contained HTML page with the plots embedded), and replaces the README's generated blocks,
each between `<!-- report:NAME -->` and `<!-- /report:NAME -->`; a test checks they match."""

from __future__ import annotations

import base64
import html
import json
import math
import re
from pathlib import Path

import pandas as pd

from hap.experiments.results import read_results
from hap.experiments.summary import SUMMARY_COLUMNS, swept_areas


def _ok(path: Path) -> pd.DataFrame:
    table = read_results(path)
    return table[table["status"] == "ok"]


def sweep_table(path: Path) -> str:
    """Means over seeds per method and target, the swept areas and the full model's logit
    difference, from a sweep's results file."""
    table = _ok(path)
    means = table.groupby(["method", "target_sparsity"])[SUMMARY_COLUMNS].mean().reset_index()
    lines = [
        "| method | target | live edges | sparsity | steps | KL | logit diff | acc | faithfulness | wall s |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for _, r in means.iterrows():
        steps = "-" if pd.isna(r["steps"]) else f"{r['steps']:.0f}"
        lines.append(
            f"| {r['method']} | {r['target_sparsity']} | {r['live_edges']:.0f} | "
            f"{r['sparsity']:.3f} | {steps} | {r['kl']:.3f} | {r['logit_diff']:.2f} | "
            f"{r['accuracy']:.3f} | {r['faithfulness']:.3f} | {r['wall_s']:.1f} |"
        )
    areas = swept_areas(table)
    lines += [
        "",
        "areas over the swept sparsities (faithfulness / gap): "
        + ", ".join(
            f"{r['method']} {r['faith_area']:.3f} / {r['gap_area']:.3f}"
            for _, r in areas.iterrows()
        ),
        f"full model's logit difference {table['full_logit_diff'].mean():.2f}",
    ]
    return "\n".join(lines)


def selection_table(refill: Path, topn: Path) -> str:
    """EAP and EAP-IG under MIB's top n then prune and under the default refill at 96-99% (KL /
    faithfulness, mean live edges in brackets)."""
    means = {}
    for name, path in (("topn", topn), ("refill", refill)):
        table = _ok(path)
        table = table[table["method"].isin(["eap", "eap-ig"])]
        cols = ["kl", "faithfulness", "live_edges"]
        means[name] = table.groupby(["method", "target_sparsity"])[cols].mean()
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
    """A frontier's means per method and budget, and its two ratios."""
    data = json.loads(path.read_text())
    points = pd.DataFrame(data["points"])
    points["steps"] = points["steps"].fillna(-1)
    lines = [
        "| method | steps | wall s | test KL | KL min-max | logit diff | faithfulness |",
        "|---|---|---|---|---|---|---|",
    ]
    for (method, steps), group in points.groupby(["method", "steps"]):
        kl = group["kl"]
        lines.append(
            f"| {method} | {'-' if steps < 0 else int(steps)} | {group['wall_s'].mean():.2f} "
            f"| {kl.mean():.3f} | {kl.min():.3f}-{kl.max():.3f} | "
            f"{group['logit_diff'].mean():.2f} | {group['faithfulness'].mean():.3f} |"
        )
    equal = data["equal_faithfulness"]
    ratio = data.get("per_step_slope_ratio", data.get("per_step_ratio"))
    lines += [
        "",
        f"per-step cost ratio HAP/EP **{ratio:.3f}**; reference level {equal['level']:.3f} (EP's "
        f"best mean x 1.05): EP reaches it in {_show(equal['reference_s'])} s, HAP in "
        f"{_show(equal['method_s'])} s; equal-faithfulness ratio **{_show(equal['ratio'])}** "
        f"(per seed: {', '.join(_show(r) for r in equal['per_seed'])})",
    ]
    versus = data.get("versus", {}).get("methods", {})
    if len(versus) > 1:
        lines += [
            "",
            "| against EP | per-step ratio | best test KL | steps to the level | seconds to it "
            "| equal-faithfulness ratio | per seed |",
            "|---|---|---|---|---|---|---|",
        ]
        for method, v in versus.items():
            e = v["equal_faithfulness"]
            lines.append(
                f"| {method} | {v['per_step_slope_ratio']:.3f} | {v['best_kl']:.3f} | "
                f"{_show(v['steps_to_level'])} | {_show(e['method_s'])} | {_show(e['ratio'])} | "
                f"{', '.join(_show(r) for r in e['per_seed'])} |"
            )
    return "\n".join(lines)


def mib_table(path: Path) -> str:
    """MIB's CPR and CMD per method."""
    areas = json.loads(path.read_text())["areas"]
    lines = ["| method | CPR (higher is better) | CMD (lower is better) |", "|---|---|---|"]
    best = max(areas, key=lambda m: areas[m]["cpr"])
    for method, a in areas.items():
        cpr = f"**{a['cpr']:.3f}**" if method == best else f"{a['cpr']:.3f}"
        lines.append(f"| {method} | {cpr} | {a['cmd']:.3f} |")
    return "\n".join(lines)


def _reached(per_seed: list) -> int:
    return sum(r is not None and not (isinstance(r, float) and math.isnan(r)) for r in per_seed)


def _rivals(frontiers: dict) -> set[str]:
    return {m for f in frontiers.values() for m in f.get("versus", {}).get("methods", {})}


def headline(folder: Path) -> str:
    """The findings in three sentences, every figure read off the frontiers at 94% and 98% and
    the sweep: HAP's per-step cost against EP's and on how many seeds it reaches EP's level;
    the fastest method to that level on every seed where one beats EP; the lowest KL per
    target in the sweep."""
    folder = Path(folder)
    frontiers = {
        level: json.loads((folder / f"frontier_ioi_{level}.json").read_text()) for level in (94, 98)
    }
    steps = " and ".join(
        f"{f['per_step_slope_ratio']:.2f} ({level}%)" for level, f in frontiers.items()
    )
    reach = ", ".join(
        f"{_reached(f['equal_faithfulness']['per_seed'])} of "
        f"{len(f['equal_faithfulness']['per_seed'])} seeds at {level}%"
        for level, f in frontiers.items()
    )
    ratio = frontiers[94]["equal_faithfulness"]["ratio"]
    holds = ratio is not None and ratio <= 0.54
    text = (
        f"A HAP step costs {steps} of an Edge Pruning step, and HAP reaches EP's best test KL x "
        f"1.05 on {reach} (each seed's own level); at 94% it takes "
        f"{'never gets there' if ratio is None else f'{ratio:.2f}x'} EP's time to EP's mean "
        "level, so the paper's 46% saving "
        f"{'holds' if holds else 'does not hold'} here."
    )
    verdicts = []
    for level, f in frontiers.items() if len(_rivals(frontiers)) > 1 else ():
        rivals = f.get("versus", {}).get("methods", {})
        ratios = {}
        for method, v in rivals.items():
            per_seed = v["equal_faithfulness"]["per_seed"]
            if per_seed and _reached(per_seed) == len(per_seed):
                ratios[method] = max(per_seed)
        if ratios:
            best = min(ratios, key=ratios.get)
            verdicts.append(
                f"at {level}% {best} reaches it on every seed in at most "
                f"{ratios[best]:.2f}x EP's time"
            )
        else:
            verdicts.append(f"at {level}% no method reaches it on every seed")
    if verdicts:
        text += " Among the variants, " + "; ".join(verdicts) + " (attribution included)."
    if (folder / "sweep.csv").exists():
        means = _ok(folder / "sweep.csv").groupby(["target_sparsity", "method"])["kl"].mean()
        best = means.groupby(level=0).idxmin().map(lambda key: key[1])
        by_method: dict[str, list[str]] = {}
        for target, method in best.items():
            by_method.setdefault(method, []).append(f"{target:.0%}")
        text += (
            " Under the shared stopping rule the lowest mean test KL is "
            + "; ".join(
                f"{method}'s at {', '.join(targets)}" for method, targets in by_method.items()
            )
            + "."
        )
    return text


def blocks(folder: Path) -> dict[str, str]:
    """Every generated block whose result file exists in `folder`."""
    folder = Path(folder)
    out: dict[str, str] = {}
    if (folder / "sweep.csv").exists():
        out["sweep"] = sweep_table(folder / "sweep.csv")
        topn = folder / "selection_topn" / "sweep.csv"
        if topn.exists():
            out["selection"] = selection_table(folder / "sweep.csv", topn)
    for frontier in sorted(folder.glob("frontier_*.json")):
        out[frontier.stem] = frontier_table(frontier)
    if (folder / "mib_ioi.json").exists():
        out["mib"] = mib_table(folder / "mib_ioi.json")
    if all((folder / f"frontier_ioi_{level}.json").exists() for level in (94, 98)):
        out["headline"] = headline(folder)
    return out


def markdown(folder: Path) -> str:
    return "\n\n".join(f"## {name}\n\n{text}" for name, text in blocks(folder).items()) + "\n"


def _html_table(block: str) -> str:
    rows, out = [], []
    for line in block.splitlines():
        if line.startswith("|") and not set(line) <= set("|-"):
            rows.append([html.escape(c.strip().strip("*")) for c in line.strip("|").split("|")])
        elif line.strip():
            out.append(f"<p>{html.escape(line).replace('**', '')}</p>")
    if rows:
        head = "".join(f"<th>{c}</th>" for c in rows[0])
        body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in r) + "</tr>" for r in rows[1:])
        out.insert(0, f"<table><tr>{head}</tr>{body}</table>")
    return "\n".join(out)


def html_page(folder: Path, plots: Path | None) -> str:
    """One self-contained page: every block as a table, every PNG under `plots` embedded."""
    parts = [
        "<!doctype html><meta charset='utf-8'><title>hap-bench report</title>",
        "<style>body{font-family:sans-serif;max-width:1100px;margin:auto}table{border-collapse:"
        "collapse}td,th{border:1px solid #ccc;padding:2px 6px;text-align:right}"
        "img{max-width:100%}</style>",
        f"<h1>hap-bench report: {html.escape(str(folder))}</h1>",
    ]
    for name, block in blocks(folder).items():
        parts += [f"<h2>{html.escape(name)}</h2>", _html_table(block)]
    for png in sorted(Path(plots).rglob("*.png")) if plots else []:
        data = base64.b64encode(png.read_bytes()).decode()
        parts += [f"<h3>{html.escape(png.name)}</h3>", f"<img src='data:image/png;base64,{data}'>"]
    return "\n".join(parts) + "\n"


MARKER = re.compile(
    r"(<!-- report:(?P<name>[\w-]+) -->\n)(?P<body>.*?)(\n<!-- /report:(?P=name) -->)", re.S
)


def readme_blocks(text: str) -> dict[str, str]:
    """The generated blocks a README holds, by name."""
    return {m["name"]: m["body"] for m in MARKER.finditer(text)}


def fill_readme(text: str, generated: dict[str, str]) -> str:
    """`text` with each marked block replaced by its generated text (blocks without data kept)."""
    return MARKER.sub(lambda m: m.group(1) + generated.get(m["name"], m["body"]) + m.group(4), text)
