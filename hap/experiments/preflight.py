"""Refuse a run that will not fit, before it loads anything: its planned peak memory
(hap.experiments.plan) against the memory the device has free now.

A search that runs out of memory dies after the model has booted and the attribution has run,
or on a CPU pushes the machine into swap; the plan's estimate is within a few percent of the
measured peak (benchmarks/plan_check.py), so a run whose estimate exceeds the free memory by
more than `margin` (default 10%) is refused in one line naming a batch size that fits. The
margin is the user's: `--memory-margin`, or `--no-memory-check` to run regardless.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping

from hap.errors import UserError

DEFAULT_MARGIN = 0.1


def free_memory(device: str) -> tuple[int, int]:
    """(bytes `device` has free now, bytes this process already holds that the estimate counts).
    On a CPU: the system's available memory, and this process's resident set (the estimate
    counts the process; what it holds now is already outside `available`). On CUDA: the free
    device memory (torch.cuda.mem_get_info), and 0."""
    if device.split(":")[0] == "cuda":
        import torch

        free, _ = torch.cuda.mem_get_info(torch.device(device))
        return int(free), 0
    import psutil

    return int(psutil.virtual_memory().available), int(psutil.Process().memory_info().rss)


def _gb(n: float) -> str:
    return f"{n / 2**30:.1f} GB" if n >= 2**30 else f"{n / 2**20:.0f} MB"


def check(
    model_name: str | None,
    spec,
    seed: int,
    split,
    configs: Mapping[str, object],
    sparsity: float,
    device: str,
    precision: str = "fp32",
    margin: float = DEFAULT_MARGIN,
    evaluate: bool = True,
) -> None:
    """Raise UserError when a method of `configs` (name -> resolved config) is estimated to
    peak above the free memory by more than `margin` (a fraction). Methods the plan has no
    formulas for are not checked; a config the plan cannot read is noted and not checked."""
    from hap.experiments import plan

    methods = [m for m in configs if m in plan.METHODS]
    if not methods:
        return
    try:
        model = plan.read_model(model_name)  # a missing model: the one-line error a load gives
    except UserError:
        raise
    except (AttributeError, KeyError, TypeError, ValueError) as error:
        # a config the plan's formulas do not cover (e.g. an architecture the engine refuses:
        # the load says why in one line); the run itself is not blocked by the check
        note_skipped(f"the plan cannot read this model's config ({type(error).__name__}: {error})")
        return
    widths = plan.task_widths(model, spec, seed, split)
    free, own = free_memory(device)
    room = free + own
    for method in methods:
        kwargs = {"sparsity": sparsity, "device": device, "precision": precision}
        kwargs.update(evaluate=evaluate, process=own)
        estimate = plan.estimate(model.shape, widths, method, configs[method], **kwargs)
        if estimate.peak_bytes <= room * (1.0 + margin):
            continue
        largest = plan.largest_batch(
            model.shape, widths, method, configs[method], room, margin=0.0, **kwargs
        )
        fix = (
            f"--set batch_size={largest} fits"
            if largest
            else "no batch size fits: a smaller model, --precision bf16 or another device"
        )
        raise UserError(
            f"{method} on {model.shape.name} is estimated to peak at {_gb(estimate.peak_bytes)} "
            f"({estimate.peak_phase.name}) and {device} has {_gb(room)} for it: {fix} (`hap plan` "
            f"shows the parts), or --memory-margin / --no-memory-check to run anyway"
        )


def note_skipped(reason: str) -> None:
    print(f"hap: note: memory check skipped: {reason}", file=sys.stderr)
