"""MIB's circuit-localisation metrics (Mueller et al. 2025, the circuit track), on MIB's grid.

At each fraction k of the graph's edges in MIB_FRACTIONS, a method's circuit keeps
n = floor(k x n_edges) edges (MIB's `int(pct * n_edges)`), its dangling edges pruned (MIB prunes
every circuit it evaluates; `hap.engine.live.live_edges` under the run's ablation), and is evaluated on the
task's test split:

    f(C) = (m(C) - m(empty)) / (m(full) - m(empty)),   m = mean logit difference

    CPR = sum of trapezoids of f over k,        CMD = sum of trapezoids of |1 - f| over k

on the linear fractions themselves (not normalised by their range, 0.999), as MIB's
`evaluate_area_under_curve` does; CPR higher is better, CMD lower.

Scoring methods (EAP, EAP-IG) are attributed once and ranked at every fraction, as MIB does:
by signed score for CPR and by absolute score for CMD. MIB's scores are taken of a loss (the
negated logit difference), so its "signed" order puts first the edges whose removal lowers the
logit difference most; in this project's sign convention (hap.search.attribution) that is ascending
score, so the signed ranking here is by -score. Mask-learning methods (EP, HAP) run once per
fraction with that fraction's edge budget as their target, and the one circuit serves both
areas. At k = 1 every method keeps the whole graph.

Where the grid is coarser than the graph: n = floor(k x n_edges) can be 0 or 1 on a small graph
(the default model's 1,519 edges give 1 edge at 0.1%, 3 at 0.2%, 7 at 0.5%), and pruning may
leave fewer (a single edge survives only if it joins the input to the logits). Every point
records n requested, n kept after pruning and the fraction actually kept; the areas use the
nominal fractions, as MIB's do.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import torch

from hap import allocator
from hap.engine.evaluate import evaluate_circuit
from hap.engine.graph import Graph
from hap.engine.live import live_edges
from hap.errors import RunFailed, UserError
from hap.experiments.registry import get_backend
from hap.experiments.runs import precision_of
from hap.progress import bar
from hap.tasks.base import Task

MIB_FRACTIONS = (0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0)


@dataclass(frozen=True)
class MIBPoint:
    """One circuit on the grid. ranking: "signed" / "absolute" (scoring methods) or "learned"
    (one search per fraction, serving both areas)."""

    method: str
    ranking: str
    fraction: float
    n_requested: int
    n_edges: int
    kept_fraction: float
    faithfulness: float
    logit_diff: float
    kl: float
    status: str = "ok"
    error: str | None = None


@dataclass
class MIBResult:
    points: list[MIBPoint]
    full_logit_diff: float
    empty_logit_diff: float
    n_graph_edges: int
    settings: dict = field(default_factory=dict)

    def curve(self, method: str, ranking: str) -> list[MIBPoint]:
        return sorted(
            (p for p in self.points if p.method == method and p.ranking in (ranking, "learned")),
            key=lambda p: p.fraction,
        )

    def areas(self) -> dict[str, dict[str, float | None]]:
        """Per method: CPR (signed or learned curve) and CMD (absolute or learned curve)."""
        out = {}
        for method in dict.fromkeys(p.method for p in self.points):
            out[method] = {
                "cpr": trapezoid(self.curve(method, "signed"), lambda f: f),
                "cmd": trapezoid(self.curve(method, "absolute"), lambda f: abs(1.0 - f)),
            }
        return out

    def to_json(self) -> dict:
        return {
            **self.settings,
            "fractions": sorted({p.fraction for p in self.points}),
            "n_graph_edges": self.n_graph_edges,
            "full_logit_diff": self.full_logit_diff,
            "empty_logit_diff": self.empty_logit_diff,
            "areas": self.areas(),
            "points": [asdict(p) for p in self.points],
        }


def trapezoid(curve: list[MIBPoint], value) -> float | None:
    """MIB's trapezoid sum of value(f) over the nominal fractions; None if a point failed."""
    if any(p.status != "ok" for p in curve) or len(curve) < 2:
        return None
    total = 0.0
    for a, b in zip(curve, curve[1:]):
        total += (b.fraction - a.fraction) * (value(a.faithfulness) + value(b.faithfulness)) / 2
    return total


def edges_at(graph: Graph, fraction: float) -> int:
    """MIB's edge count at `fraction`: floor(fraction x n_edges)."""
    return int(fraction * graph.n_edges)


def check_fractions(fractions: tuple[float, ...]) -> None:
    bad = [f for f in fractions if not 0.0 < f <= 1.0]
    if bad or len(fractions) < 2:
        raise UserError(
            f"--fractions needs two or more fractions in (0, 1], got {list(fractions)}; "
            f"MIB's grid is {','.join(map(str, MIB_FRACTIONS))}"
        )


def check_methods(methods: list[str]) -> None:
    """Refuse an unknown method, and ACDC, whose threshold, not an edge budget, sets its size."""
    for method in methods:
        get_backend(method)
        if method == "acdc":
            raise UserError(
                "acdc's threshold, not an edge budget, sets its size, so it has no point per "
                "fraction; hap mib takes eap, eap-ig, ep and hap"
            )


def run_mib(
    model,
    graph: Graph,
    task: Task,
    methods: list[str],
    configs: dict,
    fractions: tuple[float, ...] = MIB_FRACTIONS,
    seed: int = 0,
    ablation: str = "corrupted",
) -> MIBResult:
    """Every method's faithfulness curve on `fractions` (module docstring)."""
    check_fractions(fractions)
    check_methods(methods)
    points: list[MIBPoint] = []
    data = task.test
    full = evaluate_circuit(model, graph, data, None, ablation=ablation)
    learners = [m for m in methods if get_backend(m).learns_masks]
    total = sum(len(fractions) * (1 if m in learners else 2) for m in methods)
    shown = bar(total=total, desc="mib")

    def point(method: str, ranking: str, fraction: float, n: int, mask: torch.Tensor | None):
        if mask is None:  # the run failed
            nan = math.nan
            return MIBPoint(method, ranking, fraction, n, 0, nan, nan, nan, nan, "failed")
        mask = live_edges(graph, mask, ablation)
        result = evaluate_circuit(model, graph, data, mask, ablation=ablation)
        kept = int(mask.sum())
        return MIBPoint(
            method,
            ranking,
            fraction,
            n,
            kept,
            kept / graph.n_edges,
            result.faithfulness,
            result.logit_diff,
            result.kl,
        )

    for method in methods:
        backend = get_backend(method)
        config = configs[method]
        if method not in learners:
            try:
                scores = backend(model, graph, task, 0.9, seed=seed, config=config).scores
            except RunFailed as failure:
                scores, error = None, str(failure)
            for fraction in fractions:
                n = edges_at(graph, fraction)
                for ranking, key in (("signed", None), ("absolute", "abs")):
                    if scores is None:
                        p = point(method, ranking, fraction, n, None)
                        points.append(MIBPoint(**{**asdict(p), "error": error}))
                        continue
                    order = scores.abs() if key else -scores
                    points.append(point(method, ranking, fraction, n, _top(order, n)))
                    shown.update()
            continue
        for fraction in fractions:
            n = edges_at(graph, fraction)
            if n >= graph.n_edges:
                mask = torch.ones(graph.n_edges, dtype=torch.bool)
            elif n == 0:
                mask = torch.zeros(graph.n_edges, dtype=torch.bool)
            else:
                target = 1.0 - n / graph.n_edges
                try:
                    mask = backend(model, graph, task, target, seed=seed, config=config).mask
                except RunFailed as failure:
                    failed = point(method, "learned", fraction, n, None)
                    points.append(MIBPoint(**{**asdict(failed), "error": str(failure)}))
                    shown.update()
                    continue
            points.append(point(method, "learned", fraction, n, mask))
            shown.update()
    shown.close()
    return MIBResult(
        points=points,
        full_logit_diff=full.full_logit_diff,
        empty_logit_diff=full.empty_logit_diff,
        n_graph_edges=graph.n_edges,
    )


def mib_protocol(configs: dict) -> dict:
    """Each config with MIB's selection: the top n edges of the ranking, dangling ones then
    dropped (`selection="topn"`), whatever the sweep's default; the scoring methods' own curves
    are cut the same way below."""
    from hap.search import config as hap_config

    out = {}
    for method, config in configs.items():
        keys = hap_config.keys(type(config))
        key = "search.selection" if "search.selection" in keys else "selection"
        out[method] = hap_config.override(config, {key: "topn"}) if key in keys else config
    return out


def run_mib_summary(
    model,
    graph: Graph,
    task: Task,
    methods: list[str],
    configs: dict,
    fractions: tuple[float, ...],
    seed: int,
    ablation: str,
) -> tuple[MIBResult, dict]:
    """run_mib under MIB's protocol, and its JSON summary with every resolved setting."""
    import time

    import torch

    configs = mib_protocol(configs)
    start = time.perf_counter()
    result = run_mib(model, graph, task, methods, configs, fractions, seed, ablation)
    result.settings = {
        "task": task.name,
        "model": model.name,
        "seed": seed,
        "ablation": ablation,
        "selection": "topn (MIB's protocol: top n edges, dangling ones dropped)",
        **task.record(),  # the split sizes drawn, and a task file's path, hash and format
        "device": str(next(model.parameters()).device),
        "precision": precision_of(model),
        "threads": torch.get_num_threads(),
        "allocator": allocator.setting(),
        "wall_s": time.perf_counter() - start,
        "configs": {m: asdict(c) for m, c in configs.items()},
    }
    return result, result.to_json()


def _top(order: torch.Tensor, n: int) -> torch.Tensor:
    """[n_edges] bool: the n edges of largest `order` (ties by index)."""
    if n == 0:
        return torch.zeros(order.numel(), dtype=torch.bool)
    ranks = torch.argsort(order, descending=True, stable=True)
    mask = torch.zeros(order.numel(), dtype=torch.bool)
    mask[ranks[:n]] = True
    return mask


def format_table(result: MIBResult) -> str:
    """Faithfulness per fraction and method, then CPR / CMD per method."""
    fractions = sorted({p.fraction for p in result.points})
    lines = [
        f"MIB grid on {result.n_graph_edges:,} edges: f = (m(C) - m(empty)) / (m(full) - m(empty)),"
        f" m = logit difference (full {result.full_logit_diff:.3f}, empty "
        f"{result.empty_logit_diff:.3f})",
        "fraction  n edges  " + "  ".join(f"{m:>16}" for m in _columns(result)),
    ]
    for fraction in fractions:
        cells = []
        for method, ranking in _column_keys(result):
            match = [p for p in result.curve(method, ranking) if p.fraction == fraction]
            p = match[0]
            cells.append(f"{p.faithfulness:>9.3f} ({p.n_edges:>4})")
        n = int(fraction * result.n_graph_edges)
        lines.append(f"{fraction:>8}  {n:>7}  " + "  ".join(f"{c:>16}" for c in cells))
    lines.append("(f, and in brackets the edges kept after pruning dangling ones)")
    lines.append("")
    lines.append("method    CPR (higher better)  CMD (lower better)")
    for method, areas in result.areas().items():
        cpr = "failed" if areas["cpr"] is None else f"{areas['cpr']:.3f}"
        cmd = "failed" if areas["cmd"] is None else f"{areas['cmd']:.3f}"
        lines.append(f"{method:<9} {cpr:>19}  {cmd:>18}")
    return "\n".join(lines)


def _column_keys(result: MIBResult) -> list[tuple[str, str]]:
    keys = []
    for method in dict.fromkeys(p.method for p in result.points):
        rankings = {p.ranking for p in result.points if p.method == method}
        keys += [(method, r) for r in ("signed", "absolute", "learned") if r in rankings]
    return keys


def _columns(result: MIBResult) -> list[str]:
    return [f"{m} {r}" if r != "learned" else m for m, r in _column_keys(result)]
