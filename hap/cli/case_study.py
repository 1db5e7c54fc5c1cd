"""`hap case-study`: the IOI case study over a sweep's circuits (hap.analysis.casestudy)."""

from __future__ import annotations

import argparse
from pathlib import Path

from hap.cli import common, options


def add(commands) -> None:
    parser = commands.add_parser("case-study", help="IOI case study over a sweep's circuits")
    parser.add_argument("--results", type=options.input_file, default=Path("results/sweep.csv"))
    parser.add_argument("--circuits", type=Path, default=None, help="default: beside --results")
    parser.add_argument("--out", type=options.output_dir, default=Path("results/case_study"))
    parser.add_argument("--plots", type=options.output_dir, default=Path("plots"))
    common.model(parser)
    common.flags(parser)


def run(args: argparse.Namespace) -> dict:
    from hap.analysis.casestudy import case_study_of_sweep

    return case_study_of_sweep(args.results, args.circuits, args.out, args.plots, args.device)
