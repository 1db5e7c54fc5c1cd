"""Command-line value checks, run while the arguments are parsed: before any model loads.

Each function is an argparse `type`: it returns the value converted, or raises
ArgumentTypeError with what is wrong and what to pass instead, which the parser prints as one
line `hap: error: argument --NAME: ...` (exit status 2). Output paths are checked writable here
too, so a long run never ends in a file it cannot write.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path


def _int(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None


def positive_int(text: str) -> int:
    value = _int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be 1 or more, got {value}")
    return value


def nonnegative_int(text: str) -> int:
    value = _int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {value}")
    return value


def task(text: str) -> str:
    """A built-in task's name, or a task file's path (which must exist); its content is checked
    when the command starts (hap.tasks.files)."""
    from hap.tasks import BUILTIN_TASKS, is_task_file

    if text in BUILTIN_TASKS:
        return text
    if not is_task_file(text):
        raise argparse.ArgumentTypeError(
            f"{text!r} is neither a built-in task ({', '.join(sorted(BUILTIN_TASKS))}) nor a file"
        )
    if not Path(text).exists():
        raise argparse.ArgumentTypeError(f"task file {text} does not exist")
    return text


def _float(text: str, example: str = "") -> float:
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number{example}") from None


def nonnegative_float(text: str) -> float:
    value = _float(text)
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {value}")
    return value


def sparsity(text: str) -> float:
    value = _float(text, "; e.g. 0.94")
    if not 0.0 <= value < 1.0:
        raise argparse.ArgumentTypeError(f"a sparsity must be in [0, 1), got {value}; e.g. 0.94")
    return value


def _items(text: str) -> list[str]:
    items = [item.strip() for item in text.split(",")]
    if not all(items):
        raise argparse.ArgumentTypeError(f"{text!r} has an empty item; give a comma-separated list")
    return items


def _unique(values: list, what: str) -> list:
    """`values` in order without repeats; a dropped repeat is said in one line on stderr (a grid
    never holds one point twice)."""
    kept = list(dict.fromkeys(values))
    if len(kept) < len(values):
        dropped = sorted({str(v) for v in values if values.count(v) > 1})
        print(f"hap: note: dropped repeated {what}: {', '.join(dropped)}", file=sys.stderr)
    return kept


def sparsities(text: str) -> tuple[float, ...]:
    values = []
    for item in _items(text):
        try:
            values.append(sparsity(item))
        except argparse.ArgumentTypeError as error:
            raise argparse.ArgumentTypeError(f"item {item!r}: {error}") from None
    return tuple(_unique(values, "sparsities"))


def fractions(text: str) -> tuple[float, ...]:
    values = []
    for item in _items(text):
        value = _float(item)
        if not 0.0 < value <= 1.0:
            raise argparse.ArgumentTypeError(f"item {item!r}: a fraction must be in (0, 1]")
        values.append(value)
    values = sorted(_unique(values, "fractions"))
    if len(values) < 2:
        raise argparse.ArgumentTypeError("an area needs two or more fractions")
    return tuple(values)


def budgets(text: str) -> list[int]:
    values = []
    for item in _items(text):
        try:
            values.append(positive_int(item))
        except argparse.ArgumentTypeError as error:
            raise argparse.ArgumentTypeError(f"item {item!r}: {error}") from None
    values = sorted(_unique(values, "budgets"))
    if len(values) < 2:
        raise argparse.ArgumentTypeError("the per-step cost needs two or more step budgets")
    return values


def names(text: str) -> list[str]:
    return _unique(_items(text), "names")


def _existing_ancestor(path: Path) -> Path:
    while not path.exists():
        path = path.parent
    return path


def output_file(text: str) -> Path:
    """A file path that can be written: not a directory, its folder creatable and writable."""
    path = Path(text).expanduser()
    if path.is_dir():
        raise argparse.ArgumentTypeError(f"{path} is a directory; give a file path")
    if path.exists():
        if not os.access(path, os.W_OK):
            raise argparse.ArgumentTypeError(f"cannot write {path}: permission denied")
        return path
    _check_folder(path.parent, path)
    return path


def output_dir(text: str) -> Path:
    """A folder that exists and is writable, or can be created."""
    path = Path(text).expanduser()
    if path.exists() and not path.is_dir():
        raise argparse.ArgumentTypeError(f"{path} is a file; give a folder")
    _check_folder(path, path)
    return path


def _check_folder(folder: Path, target: Path) -> None:
    ancestor = _existing_ancestor(folder)
    if not ancestor.is_dir():
        raise argparse.ArgumentTypeError(f"cannot create {target}: {ancestor} is a file")
    if not os.access(ancestor, os.W_OK | os.X_OK):
        raise argparse.ArgumentTypeError(f"cannot write in {ancestor}: permission denied")


def input_file(text: str) -> Path:
    path = Path(text).expanduser()
    if not path.is_file():
        raise argparse.ArgumentTypeError(f"{path} does not exist or is not a file")
    return path
