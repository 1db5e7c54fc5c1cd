"""Time-to-faithfulness frontiers: each method at a ladder of fixed step budgets, interleaved.

A comparison of search methods at their default budgets measures the defaults. Here every
mask-learning method runs the same ladder of fixed `steps` (warm-up by the shared formula,
`hap.search.masks.warmup_steps`), and the figures that compare them are read off the frontiers:

- per-step ratio: the slope of pruning seconds against steps (least squares over every point) of
  one method over the other's: what a search step costs, fixed set-up excluded;
- equal-faithfulness ratio: the reference level is the reference method's best mean test KL over
  the ladder x `slack`; each method's time to reach it is interpolated on its mean frontier (mean
  test KL against mean wall seconds, between the two budgets that bracket the level; the first
  budget if it is already below); the ratio is of those times, with the same figure per seed
  (each seed's own reference level) for the spread.

Methods without a step budget (EAP, EAP-IG) are one point per seed.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import numpy as np

from hap import allocator
from hap.engine.graph import Graph
from hap.experiments.registry import Backend, get_backend
from hap.experiments.runs import precision_of, run_one
from hap.io.circuit import Circuit
from hap.search import config as hap_config
from hap.tasks.base import Task


@dataclass(frozen=True)
class FrontierPoint:
    method: str
    seed: int
    steps: int | None  # None: a method without a step budget
    wall_s: float
    pruning_s: float
    kl: float
    logit_diff: float
    faithfulness: float
    step_s: float | None = None  # median wall seconds of one search step (mask learners)


@dataclass
class Frontier:
    """The points of one ladder, and the circuits behind them keyed by (method, seed, steps)."""

    points: list[FrontierPoint]
    circuits: dict[tuple[str, int, int | None], Circuit] = field(default_factory=dict)

    def mean_curve(self, method: str, seed: int | None = None) -> list[tuple[int, float, float]]:
        """(steps, mean wall s, mean KL) per budget, in budget order (one seed, or all)."""
        rows: dict[int | None, list[FrontierPoint]] = {}
        for p in self.points:
            if p.method == method and (seed is None or p.seed == seed):
                rows.setdefault(p.steps, []).append(p)
        return [
            (steps, float(np.mean([p.wall_s for p in ps])), float(np.mean([p.kl for p in ps])))
            for steps, ps in sorted(rows.items(), key=lambda item: item[0] or 0)
        ]

    def per_step_slope_ratio(self, method: str = "hap", reference: str = "ep") -> float:
        return _step_cost(self.points, method) / _step_cost(self.points, reference)

    def median_step_ratio(self, method: str = "hap", reference: str = "ep") -> float:
        """Median step seconds of `method` over every run of the ladder, over the same of
        `reference`: the per-step cost ratio read from the steps themselves. A burst of load
        during one run moves a slope over budgets (`per_step_slope_ratio`, dominated by the largest
        budget's runs) but not a median over hundreds of steps."""

        def median(name: str) -> float:
            steps = [p.step_s for p in self.points if p.method == name and p.step_s]
            return float(np.median(steps)) if steps else math.nan

        return median(method) / median(reference)

    def best_kl(self, method: str, seed: int | None = None) -> float:
        """The method's best mean test KL over the ladder (one seed, or all)."""
        return min(kl for _, _, kl in self.mean_curve(method, seed))

    def common_level_ratio(
        self, method: str = "hap", reference: str = "ep", slack: float = 1.05
    ) -> float:
        """Time ratio to the level both methods reach: the worse one's best mean KL x slack.
        Always defined, so a regression check can hold it even where `method` never reaches
        the reference's own level."""
        level = slack * max(self.best_kl(method), self.best_kl(reference))
        a = time_to_level(self.mean_curve(method), level)
        b = time_to_level(self.mean_curve(reference), level)
        assert a is not None and b is not None  # both reach it by construction
        return a / b

    def equal_faithfulness(
        self, method: str = "hap", reference: str = "ep", slack: float = 1.05
    ) -> EqualFaithfulness:
        level = slack * self.best_kl(reference)
        times = {m: time_to_level(self.mean_curve(m), level) for m in (method, reference)}
        per_seed = []
        for seed in sorted({p.seed for p in self.points}):
            seed_level = slack * self.best_kl(reference, seed)
            a = time_to_level(self.mean_curve(method, seed), seed_level)
            b = time_to_level(self.mean_curve(reference, seed), seed_level)
            per_seed.append(None if a is None or b is None else a / b)
        ratio = None if times[method] is None else times[method] / times[reference]
        return EqualFaithfulness(level, times[method], times[reference], ratio, per_seed)

    def versus(self, method: str, reference: str = "ep", slack: float = 1.05) -> dict:
        """`method` against `reference` on this ladder: the two per-step cost ratios, its best
        mean test KL, the steps and wall seconds (attribution included) its mean curve takes to
        the reference's best mean KL x `slack`, and the equal-faithfulness ratio with its
        per-seed spread."""
        equal = self.equal_faithfulness(method, reference, slack)
        by_steps = [(steps, float(steps), kl) for steps, _, kl in self.mean_curve(method)]
        return {
            "per_step_slope_ratio": self.per_step_slope_ratio(method, reference),
            "median_step_ratio": _finite(self.median_step_ratio(method, reference)),
            "best_kl": self.best_kl(method),
            "steps_to_level": time_to_level(by_steps, equal.level),
            "equal_faithfulness": asdict(equal),
        }

    def learners(self) -> list[str]:
        """The methods with a step budget on this ladder, in order of first appearance."""
        return list(dict.fromkeys(p.method for p in self.points if p.steps is not None))

    def summary(self, method: str = "hap", reference: str = "ep", slack: float = 1.05) -> dict:
        """The `--json` shape: points; per_step_slope_ratio, equal_faithfulness_ratio and its
        detail for `method` (HAP, the paper's claim); `versus`: every other mask learner against
        `reference`, by `Frontier.versus`."""
        equal = self.equal_faithfulness(method, reference, slack)
        others = [m for m in self.learners() if m != reference]
        return {
            "points": [asdict(p) for p in self.points],
            "per_step_slope_ratio": self.per_step_slope_ratio(method, reference),
            "equal_faithfulness_ratio": equal.ratio,
            "equal_faithfulness": asdict(equal),
            "versus": {
                "reference": reference,
                "slack": slack,
                "methods": {m: self.versus(m, reference, slack) for m in others},
            },
        }


@dataclass(frozen=True)
class EqualFaithfulness:
    """level: the test KL both methods must reach; seconds: each one's interpolated time to it
    (None: not reached on the ladder); ratio: method / reference; per_seed: the same ratio with
    each seed's own level."""

    level: float
    method_s: float | None
    reference_s: float | None
    ratio: float | None
    per_seed: list[float | None]


def _finite(x: float) -> float | None:
    return None if math.isnan(x) else x


def time_to_level(curve: list[tuple[int, float, float]], level: float) -> float | None:
    """Wall seconds at which a (steps, wall s, KL) curve first reaches KL <= level, linear
    between the two budgets that bracket it; None if no budget reaches it."""
    previous = None
    for _, wall, kl in curve:
        if kl <= level:
            if previous is None:
                return wall
            wall0, kl0 = previous
            return wall0 + (wall - wall0) * (kl0 - level) / (kl0 - kl)
        previous = (wall, kl)
    return None


def _step_cost(points: list[FrontierPoint], method: str) -> float:
    """Least-squares slope of pruning seconds against steps: seconds per search step."""
    chosen = [(p.steps, p.pruning_s) for p in points if p.method == method and p.steps]
    if len({s for s, _ in chosen}) < 2:
        raise ValueError(f"the per-step cost of {method} needs at least two step budgets")
    steps, seconds = np.array(chosen, dtype=float).T
    return float(np.polyfit(steps, seconds, 1)[0])


def run_frontier(
    model,
    graph: Graph,
    tasks: dict[int, Task],
    methods: list[str],
    sparsity: float,
    budgets: list[int],
    configs: dict[str, object] | None = None,
    progress: bool = False,
) -> Frontier:
    """Every method at every budget on every seed's task, interleaved (seed, budget, method
    innermost) so the machine's drift hits all methods alike, after one untimed warm-up run of
    each method at the smallest budget. `configs`: per method, a resolved
    config whose `steps` the ladder overrides (defaults otherwise). Test-split metrics."""
    from tqdm import tqdm

    backends = [get_backend(m) for m in methods]
    configs = configs or {}
    plan = [
        (seed, steps, b)
        for seed in tasks
        for steps in budgets
        for b in backends
        if b.learns_masks or steps == budgets[0]
    ]
    seed, task = next(iter(tasks.items()))
    for backend in backends:  # untimed: the first run in a process pays one-off set-up costs
        budget = min(budgets) if backend.learns_masks else None
        config = _with_steps(backend, configs.get(backend.name), budget)
        backend(model, graph, task, sparsity, seed=seed, config=config)
    frontier = Frontier(points=[])
    for seed, steps, backend in tqdm(plan, disable=not progress, desc="frontier"):
        budget = steps if backend.learns_masks else None
        config = _with_steps(backend, configs.get(backend.name), budget)
        run = run_one(model, graph, tasks[seed], backend.name, sparsity, seed, config)
        circuit, cost, result = run.circuit, run.cost, run.evaluation
        frontier.circuits[(backend.name, seed, budget)] = circuit
        frontier.points.append(
            FrontierPoint(
                method=backend.name,
                seed=seed,
                steps=circuit.steps,
                wall_s=cost.wall_s,
                pruning_s=circuit.timings.get("pruning", 0.0),
                kl=result.kl,
                logit_diff=result.logit_diff,
                faithfulness=result.faithfulness,
                step_s=circuit.details.get("step_s"),
            )
        )
    return frontier


def frontier_summary(
    model,
    graph: Graph,
    tasks: dict[int, Task],
    methods: list[str],
    sparsity: float,
    budgets: list[int],
    configs: dict,
    progress: bool = False,
) -> tuple[Frontier, dict]:
    """run_frontier and its JSON summary with every resolved setting."""
    import torch

    result = run_frontier(model, graph, tasks, methods, sparsity, budgets, configs, progress)
    summary = {
        "task": next(iter(tasks.values())).name,
        "model": model.name,
        "target_sparsity": sparsity,
        "budgets": budgets,
        "seeds": list(tasks),
        **next(iter(tasks.values())).record(),  # split sizes drawn; a task file's hash, format
        "device": str(next(model.parameters()).device),
        "precision": precision_of(model),
        "threads": torch.get_num_threads(),
        "allocator": allocator.setting(),
        "configs": {m: asdict(c) for m, c in configs.items()},
        **result.summary(),
    }
    return result, summary


def _with_steps(backend: Backend, config, steps: int | None):
    """`config` (or the backend's defaults) with a fixed step budget, for mask learners."""
    base = config if config is not None else backend.config()
    if steps is None:
        return base
    key = "search.steps" if "search.steps" in hap_config.keys(type(base)) else "steps"
    return hap_config.override(base, {key: steps})


def format_table(frontier: Frontier, summary: dict) -> str:
    """The frontier as a text table: mean over seeds per method and budget, then the ratios."""
    lines = [
        f"{'method':<8} {'steps':>6} {'wall s':>8} {'KL':>7} {'KL min-max':>15} "
        f"{'logit diff':>10} {'faithful':>8}"
    ]
    groups: dict[tuple[str, int | None], list[FrontierPoint]] = {}
    for p in frontier.points:
        groups.setdefault((p.method, p.steps), []).append(p)
    for (method, steps), ps in sorted(groups.items(), key=lambda i: (i[0][0], i[0][1] or 0)):
        kls = [p.kl for p in ps]
        lines.append(
            f"{method:<8} {steps if steps is not None else '-':>6} "
            f"{np.mean([p.wall_s for p in ps]):>8.2f} {np.mean(kls):>7.3f} "
            f"{min(kls):>7.3f}-{max(kls):<7.3f} {np.mean([p.logit_diff for p in ps]):>10.2f} "
            f"{np.mean([p.faithfulness for p in ps]):>8.3f}"
        )
    equal = summary["equal_faithfulness"]

    def show(x):
        return (
            "not reached" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.3f}"
        )

    lines.append(
        f"per-step cost ratio hap/ep: {summary['per_step_slope_ratio']:.3f}; reference level: test KL "
        f"{equal['level']:.3f} (EP's best mean x 1.05); time to it: hap {show(equal['method_s'])} s, "
        f"ep {show(equal['reference_s'])} s; equal-faithfulness ratio hap/ep: "
        f"{show(equal['ratio'])} (per seed: {', '.join(show(r) for r in equal['per_seed'])})"
    )
    versus = summary.get("versus", {}).get("methods", {})
    if len(versus) > 1:
        lines.append(
            f"{'vs ep':<8} {'step ratio':>10} {'best KL':>8} {'steps to':>8} {'s to':>8} "
            f"{'ratio':>11}  per seed"
        )
        for method, v in versus.items():
            e = v["equal_faithfulness"]
            lines.append(
                f"{method:<8} {v['per_step_slope_ratio']:>10.3f} {v['best_kl']:>8.3f} "
                f"{show(v['steps_to_level']):>8} {show(e['method_s']):>8} {show(e['ratio']):>11}  "
                + ", ".join(show(r) for r in e["per_seed"])
            )
    return "\n".join(lines)
