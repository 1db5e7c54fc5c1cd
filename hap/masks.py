"""Hard-concrete edge masks and the L0-Lagrangian search shared by Edge Pruning and HAP.

The hard-concrete distribution (Louizos et al. 2018) as used by Edge Pruning (Bhaskar et al. 2024):
a stretched, clamped sigmoid of logistic noise plus log-alpha, so masks are exactly 0 or 1 with
positive probability yet differentiable in log-alpha.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass

import torch
from torch import Tensor

from hap import metrics
from hap.graph import Graph
from hap.patching import Ablation, EdgeMaskedForward, fixed_references
from hap.tasks.base import TaskData

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


def deterministic_mask(log_alpha: Tensor) -> Tensor:
    """The noise-free mask in [0, 1] (evaluation)."""
    return (torch.sigmoid(log_alpha) * (LIMIT_R - LIMIT_L) + LIMIT_L).clamp(0, 1)


def keep_probability(log_alpha: Tensor) -> Tensor:
    """P(mask != 0): the expected L0 norm per edge."""
    return torch.sigmoid(log_alpha - BETA * math.log(-LIMIT_L / LIMIT_R))


@dataclass(frozen=True)
class PruneConfig:
    """Edge Pruning's optimisation, scaled from the paper's GPT-2 small settings (lr 0.8 for masks
    and lambdas, 3000 steps with 2500 of target warm-up) to the embedded 1,519-edge model."""

    steps: int = 300
    warmup: int = 150
    lr: float = 0.3
    lambda_lr: float = 0.5
    batch_size: int = 32
    init_log_alpha: float = 3.0
    init_std: float = 0.01
    ablation: str = Ablation.CORRUPTED.value

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass
class PruneResult:
    log_alpha: Tensor  # [n_active] learned log-alpha of each active edge
    final_kl: float
    final_sparsity: float  # expected sparsity (1 - sum P(keep) / n_edges) at the last step
    seconds: float
    history: list[tuple[int, float, float, float]]  # (step, kl, expected sparsity, target)


def _prepared_batches(model, graph: Graph, data: TaskData, config: PruneConfig):
    """Per batch, what never changes during the search: the baseline and the full model's
    logits at the metric positions."""
    prepared = []
    for batch in data.batches(config.batch_size):
        full, baseline = fixed_references(model, graph, batch, config.ablation, data)
        prepared.append((batch, baseline, full))
    return prepared


def learn_masks(
    model,
    graph: Graph,
    data: TaskData,
    target_sparsity: float,
    config: PruneConfig,
    seed: int,
    active: Tensor | None = None,
) -> PruneResult:
    """Minimise KL(full || circuit) + l1 g + l2 g^2 over hard-concrete masks on the `active` edges
    (default: all); every other edge is fixed to its baseline. g = (s - t) / (1 - target): s is
    the expected sparsity over the *full* graph, t warms up linearly from the active set's
    sparsity to the target, and dividing by the final edge budget makes one lambda learning rate
    work from 90% to 99% (with the raw s - t the lambdas needed at 98% took too long to grow and
    the masks stalled near 95%). l1, l2 are trained by gradient ascent."""
    device = next(model.parameters()).device
    start = time.perf_counter()
    forward = EdgeMaskedForward(model, graph, active)
    generator = torch.Generator(device=device).manual_seed(seed)
    init = torch.randn(forward.n_active, generator=generator, device=device)
    log_alpha = (config.init_log_alpha + config.init_std * init).requires_grad_(True)
    lambdas = torch.zeros(2, device=device, requires_grad=True)
    mask_opt = torch.optim.AdamW([log_alpha], lr=config.lr, weight_decay=0.0)
    lambda_opt = torch.optim.AdamW([lambdas], lr=config.lambda_lr, weight_decay=0.0, maximize=True)
    prepared = _prepared_batches(model, graph, data.to(device), config)
    initial = 1.0 - forward.n_active / graph.n_edges
    budget = 1.0 - target_sparsity  # the gap is measured in units of the final edge budget
    kl = sparsity = torch.tensor(float("nan"))
    history: list[tuple[int, float, float, float]] = []
    for step in range(config.steps):
        batch, baseline, full = prepared[step % len(prepared)]
        target = initial + (target_sparsity - initial) * min(1.0, step / max(1, config.warmup))
        mask = sample_mask(log_alpha, generator)
        logits = metrics.at_position(forward(batch.clean, mask, baseline), batch.position)
        kl = metrics.kl_divergence(full, logits).mean()
        sparsity = 1.0 - keep_probability(log_alpha).sum() / graph.n_edges
        gap = (sparsity - target) / budget
        loss = kl + lambdas[0] * gap + lambdas[1] * gap**2
        mask_opt.zero_grad(set_to_none=True)
        lambda_opt.zero_grad(set_to_none=True)
        loss.backward()
        mask_opt.step()
        lambda_opt.step()
        if step % 25 == 0 or step == config.steps - 1:
            history.append((step, float(kl.detach()), float(sparsity.detach()), target))
    return PruneResult(
        log_alpha=log_alpha.detach(),
        final_kl=float(kl.detach()),
        final_sparsity=float(sparsity.detach()),
        seconds=time.perf_counter() - start,
        history=history,
    )


def binarize(graph: Graph, log_alpha: Tensor, active: Tensor | None, n_keep: int) -> Tensor:
    """[n_edges] bool keeping exactly min(n_keep, n_active) active edges, those of highest
    log-alpha: the threshold that lands the requested sparsity exactly."""
    active = torch.arange(graph.n_edges) if active is None else active.cpu()
    order = torch.argsort(log_alpha.cpu(), descending=True, stable=True)
    mask = torch.zeros(graph.n_edges, dtype=torch.bool)
    mask[active[order[:n_keep]]] = True
    return mask
