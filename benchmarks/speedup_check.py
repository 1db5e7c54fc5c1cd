"""The regression check on HAP's speed claim (the paper: HAP in 0.54 of Edge Pruning's time at
equal faithfulness), measured fairly: one small frontier, both methods at the same fixed step
budgets, interleaved in one process, on a seed that no default was tuned or calibrated on.

It yields (a) the per-step cost ratio HAP/EP (at 94%, and at 98% where the candidate set is small
enough for the restriction to show in a step's cost on the default model), read as the ratio of
median step seconds over every run of the ladder (`Frontier.median_step_ratio`: a burst of load
on the shared cores during one run moved the slope over budgets, which the largest budget's runs
dominate, from 0.85 to 1.08 at 98% and from 0.93 to 1.22 at 94% between runs of the same code), (b) the
equal-faithfulness ratio HAP/EP (time to EP's best KL x 1.05) and (c) test KL of both at the
largest budget. Measured here, HAP does not reach EP's level on this seed and its KL at equal
steps is above EP's, so (b) and (c) in the paper's form are printed as findings with a verdict;
`tests/test_speedup.py` asserts that the figures do not regress past the committed reference
(`results/reference/speedup_check.json`, written by `benchmarks/speedup_reference.py` with this
same code): (a) both ratios, the time ratio to the level both methods reach (always defined), and
KL(HAP) / KL(EP) at equal budget.
"""

from __future__ import annotations

import json
import platform
import statistics
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from hap.engine.graph import Graph
from hap.experiments.frontier import Frontier, run_frontier
from hap.experiments.runs import Split, build_task
from hap.io.atomic import write_json
from hap.models import load_model
from hap.models.shapes import build_checkpoint
from hap.search.attribution import attribution_scores
from hap.search.hybrid import HAPConfig, candidate_edges
from hap.search.masks import SearchConfig, learn_masks
from hap.search.selection import edges_for_sparsity

PAPER_RATIO = 0.54  # HAP 1579 s / EP 2921 s on GPT-2 small, IOI, 94% (arXiv 2510.03282)


@dataclass(frozen=True)
class CheckSettings:
    """seed 5: not a reference-result seed (0-2), not a calibration seed (100+), not seed 0 on
    which the first session picked the search's learning rates. tolerance: how far (a) and (b)
    may rise above the reference figure, relative (timings on 2 shared cores move by ~10%)."""

    task: str = "ioi"
    sparsity: float = 0.94
    budgets: tuple[int, ...] = (25, 50, 100, 200)
    high_sparsity: float = 0.98
    high_budgets: tuple[int, ...] = (25, 100)
    seed: int = 5
    n_train: int = 64
    n_val: int = 64
    n_test: int = 100
    tolerance: float = 1.25


@dataclass(frozen=True)
class CheckResult:
    per_step_ratio: float  # at `sparsity`
    per_step_ratio_high: float  # at `high_sparsity`
    equal_faithfulness_ratio: float | None  # None: HAP never reaches EP's best x 1.05
    common_level_ratio: float  # time to the worse method's best x 1.05
    kl_hap: float  # test KL at the largest budget
    kl_ep: float
    wall_hap_s: float  # wall seconds at the largest budget
    wall_ep_s: float


def run_check(
    model, graph: Graph, settings: CheckSettings = CheckSettings()
) -> tuple[Frontier, Frontier]:
    """The ladder at `sparsity` and the short one at `high_sparsity`."""
    split = Split(settings.n_train, settings.n_val, settings.n_test)
    task = build_task(model, settings.task, settings.seed, split)
    tasks, methods = {settings.seed: task}, ["ep", "hap"]
    main = run_frontier(model, graph, tasks, methods, settings.sparsity, list(settings.budgets))
    high = run_frontier(
        model, graph, tasks, methods, settings.high_sparsity, list(settings.high_budgets)
    )
    return main, high


def check_result(
    frontiers: tuple[Frontier, Frontier], settings: CheckSettings = CheckSettings()
) -> CheckResult:
    frontier, high = frontiers
    top = max(settings.budgets)
    last = {p.method: p for p in frontier.points if p.steps == top}
    return CheckResult(
        per_step_ratio=frontier.median_step_ratio(),
        per_step_ratio_high=high.median_step_ratio(),
        equal_faithfulness_ratio=frontier.equal_faithfulness().ratio,
        common_level_ratio=frontier.common_level_ratio(),
        kl_hap=last["hap"].kl,
        kl_ep=last["ep"].kl,
        wall_hap_s=last["hap"].wall_s,
        wall_ep_s=last["ep"].wall_s,
    )


def verdict(ratio: float | None) -> str:
    if ratio is None:
        return "claim does not hold here (HAP never reaches EP's faithfulness on the ladder)"
    return "claim holds" if ratio <= PAPER_RATIO else "claim does not hold here"


def report(result: CheckResult, settings: CheckSettings = CheckSettings()) -> str:
    equal = result.equal_faithfulness_ratio
    shown = "not reached" if equal is None else f"{equal:.3f}"
    return (
        f"HAP vs EP at {settings.sparsity:.0%} on {settings.task} (seed {settings.seed}, budgets "
        f"{list(settings.budgets)}, {torch.get_num_threads()} threads, interleaved):\n"
        f"  (a) per-step cost ratio {result.per_step_ratio:.3f} vs the paper's {PAPER_RATIO}: "
        f"{verdict(result.per_step_ratio)} (at {settings.high_sparsity:.0%}: "
        f"{result.per_step_ratio_high:.3f})\n"
        f"  (b) equal-faithfulness time ratio {shown} vs the paper's {PAPER_RATIO}: "
        f"{verdict(equal)}; time ratio to the level both reach: "
        f"{result.common_level_ratio:.3f}\n"
        f"  (c) at {max(settings.budgets)} steps: test KL HAP {result.kl_hap:.3f}, "
        f"EP {result.kl_ep:.3f} (KL(HAP) <= 1.10 KL(EP) + 0.01: "
        f"{'holds' if result.kl_hap <= 1.10 * result.kl_ep + 0.01 else 'does not hold here'}); "
        f"wall HAP {result.wall_hap_s:.1f}s, EP {result.wall_ep_s:.1f}s"
    )


@dataclass(frozen=True)
class ScaleSettings:
    """The per-step check at the paper's scale: a GPT-2-small-shaped model with random weights
    (hap.models.shapes, 32,491 edges), HAP's candidates from its own EAP pass (HAP's default multiple),
    `steps` steps of each method's own search loop on `batch` prompts, the two methods
    alternated for `rounds` rounds in this process. A run's first step is a warm-up; the figure
    is the median step of each method."""

    shape: str = "gpt2-small"
    sparsity: float = 0.94
    batch: int = 4
    steps: int = 4
    rounds: int = 2
    seed: int = 5
    model_seed: int = 0
    tolerance: float = 1.25


@dataclass(frozen=True)
class ScaleResult:
    ep_step_s: float
    hap_step_s: float
    ratio: float  # HAP / EP, per step
    n_edges: int
    n_candidates: int


def run_scale_check(settings: ScaleSettings = ScaleSettings(), device=None) -> ScaleResult:
    model = load_model(build_checkpoint(settings.shape, settings.model_seed), device=device)
    graph = Graph.from_model(model)
    task = build_task(model, "ioi", settings.seed, Split(settings.batch, 0, 0))
    n_keep = edges_for_sparsity(graph, settings.sparsity)
    scores = attribution_scores(model, graph, task.train, batch_size=settings.batch)
    candidates = candidate_edges(scores, n_keep, HAPConfig().candidate_multiple)
    config = SearchConfig(steps=settings.steps, batch_size=settings.batch)
    times: dict[str, list[float]] = {"ep": [], "hap": []}
    for _ in range(settings.rounds):
        for method, active in (("ep", None), ("hap", candidates)):
            run = learn_masks(model, graph, task, settings.sparsity, config, settings.seed, active)
            times[method] += run.step_seconds[1:]
    ep, hap = statistics.median(times["ep"]), statistics.median(times["hap"])
    return ScaleResult(ep, hap, hap / ep, graph.n_edges, int(candidates.numel()))


def scale_report(result: ScaleResult, settings: ScaleSettings = ScaleSettings()) -> str:
    return (
        f"  (a) at the paper's scale ({settings.shape}-shaped, random weights, "
        f"{result.n_edges} edges, {result.n_candidates} candidates, batch {settings.batch}): "
        f"per-step ratio {result.ratio:.3f} (HAP {result.hap_step_s:.3f}s, EP "
        f"{result.ep_step_s:.3f}s) vs the paper's {PAPER_RATIO}: {verdict(result.ratio)}"
    )


def write_reference(
    result: CheckResult,
    settings: CheckSettings,
    scale: ScaleResult,
    scale_settings: ScaleSettings,
    path: Path,
) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    record = {
        **asdict(result),
        "settings": asdict(settings),
        "scale": {**asdict(scale), "settings": asdict(scale_settings)},
        "threads": torch.get_num_threads(),
        "machine": platform.machine(),
        "torch": torch.__version__,
    }
    write_json(path, record)


def read_reference(path: Path) -> dict:
    return json.loads(path.read_text())
