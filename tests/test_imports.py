"""Importing hap changes nothing process-wide: no matplotlib backend, no hub environment
variables (only while a model loads), no torch thread count; and the baselines install under a
name of the project's own."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

PROBE = """
import os, matplotlib, torch
backend, threads = matplotlib.get_backend(), torch.get_num_threads()
keys = ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")
import hap.cli, hap.analysis.plots, hap.experiments.sweep, hap.models, hap.experiments.mib
import hap.io.formats, hap_baselines.eap
assert matplotlib.get_backend() == backend, (backend, matplotlib.get_backend())
assert not any(k in os.environ for k in keys), "set at import"
hap.models.load_model(device="cpu")
assert not any(k in os.environ for k in keys), "left behind by load_model"
assert torch.get_num_threads() == threads
try:
    import baselines
except ModuleNotFoundError:
    print("ok")
"""


def test_import_and_load_leave_the_process_as_it_was(tmp_path):
    env = {
        k: v for k, v in os.environ.items() if k not in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")
    }
    env["MPLBACKEND"] = "svg"  # a notebook's own choice, which hap must keep
    done = subprocess.run(
        [sys.executable, "-c", PROBE], cwd=tmp_path, env=env, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "ok"


# The rooms of the library, lowest first: a module may import its own room and the rooms below it.
ROOMS = [
    "hap.errors",
    "hap.progress",
    "hap.timing",
    "hap.tasks",
    "hap.engine",
    "hap.models",
    "hap.io",
    "hap.search",
    "hap_baselines",
    "hap.experiments",
    "hap.analysis",
    "hap.cli",
]
ROOT = Path(__file__).resolve().parents[1]


def _room(module: str) -> int | None:
    for i, room in enumerate(ROOMS):
        if module == room or module.startswith(room + "."):
            return i
    return None


def _modules() -> dict[str, Path]:
    out = {}
    for path in [*(ROOT / "hap").rglob("*.py"), *(ROOT / "baselines").glob("*.py")]:
        parts = path.relative_to(ROOT).with_suffix("").parts
        name = ".".join(("hap_baselines", *parts[1:]) if parts[0] == "baselines" else parts)
        out[name.removesuffix(".__init__")] = path
    return out


def _imports(path: Path, modules: dict[str, Path]) -> set[str]:
    """Every project module `path` imports, at the top or inside a function (a lazy import is
    still a dependency), except under `if TYPE_CHECKING:`."""
    tree = ast.parse(path.read_text())
    typing_only = {
        id(n)
        for node in ast.walk(tree)
        if isinstance(node, ast.If) and getattr(node.test, "id", "") == "TYPE_CHECKING"
        for n in ast.walk(node)
    }
    found = set()
    for node in ast.walk(tree):
        if id(node) in typing_only:
            continue
        if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [f"{node.module}.{a.name}" for a in node.names]
            found |= {n for n in names if n in modules} | {node.module}
        elif isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
    return {m for m in found if m in modules}


def test_rooms_import_only_rooms_below_and_no_module_imports_in_a_circle():
    modules = _modules()
    graph = {name: _imports(path, modules) for name, path in modules.items()}
    upward = [
        f"{name} -> {dep}"
        for name, deps in graph.items()
        for dep in deps
        if _room(name) is not None and _room(dep) is not None and _room(dep) > _room(name)
    ]
    assert not upward, upward
    state: dict[str, int] = {}  # 1: on the current path, 2: done

    def visit(name: str, path: list[str]) -> None:
        state[name] = 1
        for dep in graph[name] - {name}:
            if dep.startswith(name + "."):  # a package importing its own submodule
                continue
            if state.get(dep) == 1:
                raise AssertionError(f"import circle: {' -> '.join([*path, name, dep])}")
            if dep not in state:
                visit(dep, [*path, name])
        state[name] = 2

    for name in graph:
        if name not in state:
            visit(name, [])
