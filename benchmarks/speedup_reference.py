"""Write the reference figures of the CI speedup check (results/reference/speedup_check.json).

    python benchmarks/speedup_reference.py [--threads 2] [--repeats 3]

Runs exactly what `tests/test_speedup.py` runs (speedup_check.run_check on the default model and
run_scale_check on the GPT-2-small shape), `--repeats` times, and records the median of each
ratio (for the scale check, the run with the median ratio), so one noisy run does not set the
bar. Run it on the machine whose CI the check guards, with nothing else on the cores, after a
change that is meant to move the figures; say so in the commit.
"""

from __future__ import annotations

import argparse
import statistics
from dataclasses import replace
from pathlib import Path

import torch
from speedup_check import (
    CheckSettings,
    ScaleSettings,
    check_result,
    report,
    run_check,
    run_scale_check,
    scale_report,
    write_reference,
)

from hap.engine.graph import Graph
from hap.models import load_model


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--out", type=Path, default=Path("results/reference/speedup_check.json"), help="JSON"
    )
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    model = load_model(device="cpu")
    graph = Graph.from_model(model)
    settings = CheckSettings()
    results = []
    for _ in range(args.repeats):
        results.append(check_result(run_check(model, graph, settings), settings))
        print(report(results[-1], settings), flush=True)
    equal = [r.equal_faithfulness_ratio for r in results]
    median = replace(
        results[0],
        per_step_ratio=statistics.median(r.per_step_ratio for r in results),
        per_step_ratio_high=statistics.median(r.per_step_ratio_high for r in results),
        common_level_ratio=statistics.median(r.common_level_ratio for r in results),
        equal_faithfulness_ratio=None if None in equal else statistics.median(equal),
    )
    scale_settings = ScaleSettings()
    scales = [run_scale_check(scale_settings, device="cpu") for _ in range(args.repeats)]
    for scale in scales:
        print(scale_report(scale, scale_settings), flush=True)
    ratios = [s.ratio for s in scales]
    scale = min(scales, key=lambda s: abs(s.ratio - statistics.median(ratios)))
    write_reference(median, settings, scale, scale_settings, args.out)
    print("reference (medians):", median, scale)


if __name__ == "__main__":
    main()
