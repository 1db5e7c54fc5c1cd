"""`hap report [RESULTS_DIR]`: the result tables as Markdown (stdout or --out), a self-contained
HTML page (--html), and the README's generated blocks refreshed (--readme) or checked
(--readme ... --check: exit 1 when they differ from the data)."""

from __future__ import annotations

import argparse
from pathlib import Path

from hap.cli import common, options


def add(commands) -> None:
    parser = commands.add_parser("report", help="result tables from a results folder")
    parser.add_argument("results", nargs="?", type=Path, default=Path("results/reference"))
    parser.add_argument("--plots", type=Path, default=None, help="PNGs to embed in --html")
    parser.add_argument("--out", type=options.output_file, default=None, help="Markdown file")
    parser.add_argument("--html", type=options.output_file, default=None, help="HTML page")
    parser.add_argument("--readme", type=Path, default=None, help="refresh its generated blocks")
    parser.add_argument("--check", action="store_true", help="with --readme: only compare")
    common.flags(parser)


def run(args: argparse.Namespace) -> dict:
    from hap.analysis.report import blocks, fill_readme, html_page, markdown, readme_blocks
    from hap.errors import RunFailed, UserError
    from hap.io.atomic import atomic_write

    if not args.results.is_dir():
        raise UserError(f"{args.results} is not a results folder (e.g. results/reference)")
    generated = blocks(args.results)
    if not generated:
        raise UserError(f"{args.results} holds no sweep.csv, frontier_*.json or mib_ioi.json")
    text = markdown(args.results)
    if args.out:
        atomic_write(args.out, lambda f: f.write(text.encode()))
    if args.html:
        page = html_page(args.results, args.plots).encode()
        atomic_write(args.html, lambda f: f.write(page))
    stale: list[str] = []
    if args.readme:
        if not args.readme.is_file():
            raise UserError(f"{args.readme} is not a file")
        old = args.readme.read_text()
        stale = [n for n, body in readme_blocks(old).items() if generated.get(n, body) != body]
        if stale and args.check:
            raise RunFailed(f"{args.readme}: generated blocks differ from {args.results}: {stale}")
        if stale:
            new = fill_readme(old, generated).encode()
            atomic_write(args.readme, lambda f: f.write(new))
    if not (args.out or args.json or args.readme):
        print(text, end="")
    return {"results": str(args.results), "blocks": sorted(generated), "readme_updated": stale}
