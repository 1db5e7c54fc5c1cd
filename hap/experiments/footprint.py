"""The resident memory of a process that has booted a model, less the model: measured on this
machine, once.

What Python, torch, transformers and TransformerLens hold after a boot (their code, the
tokenizer, the bridge's modules) depends on their versions and the machine: 466 MB in one
environment and 586 MB in a fresh one with a newer transformers, for the same embedded model. A
constant would be wrong wherever it was not measured, so `hap plan` measures it: a fresh
interpreter boots the embedded model as a run does, releases its free heap, and reports its
resident set; less the model's own resident parts (by the plan's formulas) that is the process.
The figure is cached per interpreter and library versions, so only the first plan pays the few
seconds it takes.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
from importlib import metadata
from pathlib import Path

PROBE = """
import ctypes, gc, json
from hap.engine.graph import Graph
from hap.experiments.runs import Split, build_task
from hap.models import load_model
from hap.timing import rss_mb
model = load_model(None, device="cpu")
build_task(model, "ioi", 0, Split(n_train=1, n_val=0, n_test=0))
Graph.from_model(model)
gc.collect()
try:
    ctypes.CDLL("libc.so.6").malloc_trim(0)
except (OSError, AttributeError):
    pass
print(json.dumps({"rss_mb": rss_mb()}))
"""


def environment_key() -> str:
    """What the figure depends on: the interpreter, the libraries' versions, the machine."""
    versions = []
    for name in ("torch", "transformers", "transformer-lens", "tokenizers", "hap-bench"):
        try:
            versions.append(f"{name}={metadata.version(name)}")
        except metadata.PackageNotFoundError:
            versions.append(f"{name}=none")
    return "|".join([sys.executable, platform.machine(), *versions])


def _cache_file() -> Path:
    from hap.models.zoo import cache_root

    return cache_root() / "process-footprint.json"


def booted_rss_mb(refresh: bool = False) -> float:
    """The resident set (MB) of a fresh interpreter that has booted the embedded model and built
    a task; measured in a subprocess and cached by `environment_key()`."""
    path, key = _cache_file(), environment_key()
    cached: dict = {}
    if path.is_file():
        try:
            cached = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError):
            cached = {}  # a damaged cache is measured afresh and rewritten
    if not refresh and isinstance(cached.get(key), (int, float)):
        return float(cached[key])
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": ""}
    out = subprocess.run(
        [sys.executable, "-c", PROBE], check=True, capture_output=True, text=True, env=env
    )
    rss = float(json.loads(out.stdout.strip().splitlines()[-1])["rss_mb"])
    cached[key] = rss
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(cached, indent=1) + "\n")
    except OSError:
        pass  # a read-only cache costs the probe again next time, nothing else
    return rss
