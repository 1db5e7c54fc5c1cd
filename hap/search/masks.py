"""Hard-concrete edge masks and the L0-Lagrangian search shared by Edge Pruning and HAP.

The hard-concrete distribution (Louizos et al. 2018) as used by Edge Pruning (Bhaskar et al. 2024):
a stretched, clamped sigmoid of logistic noise plus log-alpha, so masks are exactly 0 or 1 with
positive probability yet differentiable in log-alpha.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import torch
from torch import Tensor

from hap.engine import metrics
from hap.engine.ablation import Ablation, check_ablation, fixed_references
from hap.engine.graph import Graph
from hap.engine.patching import EdgeMaskedForward
from hap.errors import ConfigError, RunFailed, UserError
from hap.progress import bar
from hap.search.selection import Selection, check_selection, edges_for_sparsity, select
from hap.tasks.base import Task, TaskData

BETA = 2.0 / 3.0  # temperature
LIMIT_L = -0.1  # stretch: the sigmoid is mapped onto (LIMIT_L, LIMIT_R), then clamped to [0, 1]
LIMIT_R = 1.1
EPS = 1e-6


def sample_mask(log_alpha: Tensor, generator: torch.Generator | None = None) -> Tensor:
    """A stochastic mask in [0, 1] (training)."""
    u = torch.rand(log_alpha.shape, generator=generator, device=log_alpha.device)
    u = u.clamp(EPS, 1 - EPS)
    s = torch.sigmoid((u.log() - (-u).log1p() + log_alpha) / BETA)
    return (s * (LIMIT_R - LIMIT_L) + LIMIT_L).clamp(0, 1)


def keep_probability(log_alpha: Tensor) -> Tensor:
    """P(mask != 0): the expected L0 norm per edge."""
    return torch.sigmoid(log_alpha - BETA * math.log(-LIMIT_L / LIMIT_R))


def expected_sparsity(log_alpha: Tensor, n_edges: int) -> Tensor:
    """1 - (expected kept edges) / n_edges, for masks with `log_alpha` ([n_active]) on the
    active edges and every other edge of the `n_edges` fixed off: the sparsity the Lagrangian
    constrains."""
    return 1.0 - keep_probability(log_alpha).sum() / n_edges


@dataclass(frozen=True)
class SearchConfig:
    """The L0-Lagrangian search shared by Edge Pruning and HAP, and the one stopping rule.

    Budget: `steps=None` (the default) runs until the stopping rule fires, at most `max_steps`;
    `steps=N` runs exactly N steps (no validation passes). The target sparsity warms up linearly
    from the search's start (0 for Edge Pruning, the candidate set's sparsity for HAP, the
    initial masks' expected sparsity for a warm start, `learn_masks`) over
    `warmup_steps(...)` = max(min_warmup, warmup_per_sparsity x target) steps, or `warmup`
    steps when given. A fixed budget warms up for at most half its steps. The length is the same
    for every method wherever it starts: the Lagrangian needs the time to settle, not the
    distance. A length proportional to the distance (HAP's 14-24 steps from its candidates'
    76-84% at 90-94%, the 10-step floor at 96-99%) let the lambdas overshoot the target by 0.2-0.4
    edge budgets at 90-94%, so the rule's sparsity half failed for 120-470 steps, and let the
    plateau half fire 20-50 steps after a 10-step warm-up at 96-99%, before the masks had learned
    anything; on the calibration seeds (100, 101) the shared length settled both
    (docs/hap-claim.md, results/calibration/hap_warmup.json).

    Stopping rule: once warmed up, every `eval_every` steps the circuit the search would return
    now (top log-alpha at the exact edge budget) is scored by KL on the task's validation split.
    The search stops when the expected sparsity is within `sparsity_tol` of the target (in units
    of the final edge budget, 1 - target) and validation KL has not improved by more than
    `rel_tol` (relative) over the last `patience` evaluations. The constants come from
    `benchmarks/calibrate_stopping.py` (validation split, calibration seeds only;
    results/calibration/stopping.csv).

    Optimisation: AdamW on log-alpha (lr), gradient ascent on the two Lagrange multipliers
    (lambda_lr); `batch_size` train prompts per step, cycling through the train split. Initial
    log-alpha: `init_log_alpha` on every active edge (a warm start's own values instead, see
    `learn_masks`), plus `init_std` times standard normal noise drawn from the seed.
    """

    steps: int | None = None
    max_steps: int = 1000
    warmup: int | None = None
    warmup_per_sparsity: float = 80.0
    min_warmup: int = 10
    eval_every: int = 10
    patience: int = 2
    rel_tol: float = 0.1
    sparsity_tol: float = 0.1
    lr: float = 0.3
    lambda_lr: float = 0.5
    batch_size: int = 32
    init_log_alpha: float = 3.0
    init_std: float = 0.01
    ablation: str = Ablation.CORRUPTED.value
    selection: str = "refill"

    def validate(self) -> None:
        positive = {
            "max_steps": self.max_steps,
            "eval_every": self.eval_every,
            "patience": self.patience,
            "batch_size": self.batch_size,
        }
        if self.steps is not None:
            positive["steps"] = self.steps
        bad = [f"{k}={v}" for k, v in positive.items() if v < 1]
        if self.warmup is not None and self.warmup < 0:
            bad.append(f"warmup={self.warmup}")
        if bad:
            raise ConfigError(f"search settings must be positive: {', '.join(bad)}")
        from hap.search.config import check_ranges

        check_ranges(
            self,
            {
                "warmup_per_sparsity": (
                    self.warmup_per_sparsity >= 0,
                    "must be >= 0, warm-up steps per unit of sparsity",
                ),
                "min_warmup": (self.min_warmup >= 0, "must be >= 0"),
                "rel_tol": (
                    0 <= self.rel_tol < 1,
                    "must be in [0, 1), the relative KL gain that resets patience",
                ),
                "sparsity_tol": (
                    0 < self.sparsity_tol <= 1,
                    "must be in (0, 1], a fraction of the final edge budget",
                ),
                "lr": (self.lr > 0, "must be > 0"),
                "lambda_lr": (self.lambda_lr > 0, "must be > 0"),
                "init_log_alpha": (True, "must be finite"),
                "init_std": (self.init_std >= 0, "must be >= 0"),
            },
        )
        check_ablation(self.ablation)
        check_selection(self.selection)


def warmup_steps(config: SearchConfig, target: float) -> int:
    """Steps over which the target sparsity rises from the search's start to `target`, the same
    from every start (see SearchConfig)."""
    if config.warmup is not None:
        warmup = config.warmup
    else:
        warmup = max(config.min_warmup, round(config.warmup_per_sparsity * target))
    if config.steps is not None:
        warmup = min(warmup, config.steps // 2)
    return warmup


def median_step(step_seconds: list[float]) -> float | None:
    """Median wall seconds of one search step (the first, which builds the engine's buffers,
    excluded when there are others)."""
    times = sorted(step_seconds[1:] or step_seconds)
    return times[len(times) // 2] if times else None


def rule_fires(val_kls: list[float], patience: int, rel_tol: float) -> bool:
    """Whether validation KL (one value per evaluation, in order) has gone `patience` evaluations
    without improving on its best by more than `rel_tol` (relative). The sparsity half of the
    rule is checked by the caller."""
    best, since = float("inf"), 0
    for kl in val_kls:
        if kl < best * (1.0 - rel_tol):
            best, since = kl, 0
        else:
            since += 1
    return since >= patience


@dataclass
class SearchResult:
    """log_alpha: [n_active] learned log-alpha of each active edge. steps: steps run; stopped:
    "rule" (the stopping rule fired), "max_steps" (the cap) or "fixed" (a fixed budget).
    start: the sparsity the target warmed up from, over `warmup` steps. lambdas: the two
    Lagrange multipliers (l1, l2) at the end. val_history: (step, validation KL, expected
    sparsity) at each evaluation. step_seconds: wall seconds of each step (sample, masked
    forward, backward, optimiser), validation excluded."""

    log_alpha: Tensor
    steps: int
    start: float
    warmup: int
    lambdas: tuple[float, float]
    stopped: str
    seconds: float
    val_history: list[tuple[int, float, float]]
    step_seconds: list[float]


def _prepared_batches(model, graph: Graph, data: TaskData, config: SearchConfig):
    """Per batch, what never changes during the search: the batch, its baseline and the full
    model's logits at the metric positions."""
    prepared = []
    for batch in data.batches(config.batch_size):
        full, baseline = fixed_references(model, graph, batch, config.ablation, data)
        prepared.append((batch, baseline, full))
    return prepared


@torch.no_grad()
def circuit_kl(model, graph: Graph, prepared: list, kept: Tensor) -> float:
    """Mean KL(full || circuit) of the binary circuit `kept` ([n_edges] bool) over `prepared`
    batches (from `_prepared_batches`)."""
    forward = EdgeMaskedForward(model, graph, kept.nonzero().squeeze(1))
    ones = torch.ones(forward.n_active, device=forward.active.device)
    total, count = 0.0, 0
    for batch, baseline, full in prepared:
        logits = metrics.at_position(forward(batch.clean, ones, baseline), batch.position)
        total += float(metrics.kl_divergence(full, logits).sum())
        count += len(batch)
    return total / count


def learn_masks(
    model,
    graph: Graph,
    task: Task,
    target_sparsity: float,
    config: SearchConfig,
    seed: int,
    active: Tensor | None = None,
    init_log_alpha: Tensor | None = None,
) -> SearchResult:
    """Minimise KL(full || circuit) + l1 g + l2 g^2 over hard-concrete masks on the `active` edges
    (default: all) of the task's train split; every other edge is fixed to its baseline.
    g = (s - t) / (1 - target): s is the expected sparsity over the *full* graph, t warms up
    linearly from a start to the target, and dividing by the final edge budget makes one lambda
    learning rate work from 90% to 99% (with the raw s - t the lambdas needed at 98% took too long
    to grow and the masks stalled near 95%). l1, l2 start at 0 and are trained by gradient ascent.
    Stops by `config`'s budget or rule (SearchConfig).

    Initial masks: log-alpha `config.init_log_alpha` on every active edge, or `init_log_alpha`
    ([n_active], one per active edge in `active`'s order: a warm start, hap.search.warm), plus
    `config.init_std` noise either way. The start t warms up from: the active set's sparsity
    without `init_log_alpha` (EP: 0, HAP: its candidates'), else the initial masks' own expected
    sparsity (`expected_sparsity`), so that g is exactly 0 at the first step and the lambdas stay
    at 0 through it. AdamW's ascent moves a lambda by about lambda_lr per step in the direction of
    g's sign whatever its size, so a target that started below a warm start's sparsity would grow
    l1 through the whole warm-up and push masks already near the budget back towards density
    (measured: a warm start that lost to EP at every step count on IOI at 94%)."""
    device = next(model.parameters()).device
    start = time.perf_counter()
    forward = EdgeMaskedForward(model, graph, active)
    generator = torch.Generator(device=device).manual_seed(seed)
    init = torch.randn(forward.n_active, generator=generator, device=device)
    if init_log_alpha is None:
        log_alpha = (config.init_log_alpha + config.init_std * init).requires_grad_(True)
        initial = 1.0 - forward.n_active / graph.n_edges
    else:
        if init_log_alpha.shape != (forward.n_active,):
            raise ValueError(
                f"init_log_alpha has shape {tuple(init_log_alpha.shape)}; it needs one value per "
                f"active edge, ({forward.n_active},)"
            )
        warm = init_log_alpha.detach().to(device=device, dtype=init.dtype)
        log_alpha = (warm + config.init_std * init).requires_grad_(True)
        initial = float(expected_sparsity(log_alpha.detach(), graph.n_edges))
    lambdas = torch.zeros(2, device=device, requires_grad=True)
    mask_opt = torch.optim.AdamW([log_alpha], lr=config.lr, weight_decay=0.0)
    lambda_opt = torch.optim.AdamW([lambdas], lr=config.lambda_lr, weight_decay=0.0, maximize=True)
    prepared = _prepared_batches(model, graph, task.train.to(device), config)
    by_rule = config.steps is None
    if by_rule and len(task.val) == 0:
        raise UserError(
            "the stopping rule scores KL on the validation split, which is empty: give the task "
            "validation prompts (--n-val) or a fixed budget (--set steps=N)"
        )
    val = _prepared_batches(model, graph, task.val.to(device), config) if by_rule else []
    warmup = warmup_steps(config, target_sparsity)
    budget = 1.0 - target_sparsity  # the gap is measured in units of the final edge budget
    n_keep = edges_for_sparsity(graph, target_sparsity)
    val_history: list[tuple[int, float, float]] = []
    limit = config.max_steps if by_rule else config.steps
    stopped = "max_steps" if by_rule else "fixed"
    step_seconds: list[float] = []
    step = 0
    shown = bar(total=limit, desc=f"search to {target_sparsity:.1%}", leave=False)
    for step in range(1, limit + 1):
        begin = time.perf_counter()
        batch, baseline, full = prepared[(step - 1) % len(prepared)]
        target = initial + (target_sparsity - initial) * min(1.0, (step - 1) / max(1, warmup))
        mask = sample_mask(log_alpha, generator)
        logits = metrics.at_position(forward(batch.clean, mask, baseline), batch.position)
        kl = metrics.kl_divergence(full, logits).mean()
        sparsity = expected_sparsity(log_alpha, graph.n_edges)
        gap = (sparsity - target) / budget
        loss = kl + lambdas[0] * gap + lambdas[1] * gap**2
        mask_opt.zero_grad(set_to_none=True)
        lambda_opt.zero_grad(set_to_none=True)
        loss.backward()
        mask_opt.step()
        lambda_opt.step()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        step_seconds.append(time.perf_counter() - begin)
        if not torch.isfinite(loss):  # read after the step: no extra CUDA sync inside it
            shown.close()
            raise RunFailed(
                f"the search's loss became {float(loss.detach())} at step {step} (KL "
                f"{float(kl.detach())}, sparsity gap {float(gap.detach())}): lower lr or lambda_lr"
            )
        shown.update()
        if step % 10 == 1 and not shown.disable:
            expected = float(expected_sparsity(log_alpha.detach(), graph.n_edges))
            shown.set_postfix(
                kl=f"{float(kl.detach()):.3f}", sparsity=f"{expected:.3f}", target=f"{target:.3f}"
            )
        if by_rule and step >= warmup and (step - warmup) % config.eval_every == 0:
            expected = float(expected_sparsity(log_alpha.detach(), graph.n_edges))
            kept = binarize(graph, log_alpha.detach(), active, n_keep, config).mask
            val_history.append((step, circuit_kl(model, graph, val, kept), expected))
            near = abs(expected - target_sparsity) <= config.sparsity_tol * budget
            if near and rule_fires([h[1] for h in val_history], config.patience, config.rel_tol):
                stopped = "rule"
                break
    shown.close()
    return SearchResult(
        log_alpha=log_alpha.detach(),
        steps=step,
        start=initial,
        warmup=warmup,
        lambdas=(float(lambdas[0].detach()), float(lambdas[1].detach())),
        stopped=stopped,
        seconds=time.perf_counter() - start,
        val_history=val_history,
        step_seconds=step_seconds,
    )


def binarize(
    graph: Graph, log_alpha: Tensor, active: Tensor | None, n_keep: int, config: SearchConfig
) -> Selection:
    """The circuit of `n_keep` live edges ranked by log-alpha among the `active` edges (default
    all), by the config's selection rule (hap.search.selection): the stopping rule scores the
    very circuit the search returns."""
    priority = torch.full((graph.n_edges,), -torch.inf)
    eligible = None if active is None else active.cpu()
    priority[slice(None) if eligible is None else eligible] = log_alpha.detach().cpu().float()
    return select(graph, priority, n_keep, config.ablation, config.selection, eligible)
