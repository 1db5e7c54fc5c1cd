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
    parser.add_argument(
        "--readme",
        type=Path,
        nargs="+",
        default=None,
        help="Markdown files (the README, docs/*.md) whose generated blocks to refresh",
    )
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
    pages = args.readme or []
    for page in pages:
        if not page.is_file():
            raise UserError(f"{page} is not a file")
    for page in pages:
        old = page.read_text()
        here = [n for n, body in readme_blocks(old).items() if generated.get(n, body) != body]
        if here and args.check:
            raise RunFailed(f"{page}: generated blocks differ from {args.results}: {here}")
        if here:
            new = fill_readme(old, generated).encode()
            atomic_write(page, lambda f, new=new: f.write(new))
        stale += here
    if not (args.out or args.json or args.readme):
        print(text, end="")
    return {"results": str(args.results), "blocks": sorted(generated), "readme_updated": stale}
