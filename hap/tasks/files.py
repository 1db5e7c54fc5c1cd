"""Task files: a researcher's own prompt pairs, and the other tools' dataset formats, read into
the same `Example` list the built-in generators write, so the rest of the pipeline never knows
where a task came from.

Formats (hap.tasks.schemas; detected by content, `fmt` overrides) and containers
(hap.tasks.records):
- native: JSONL, JSON (a list of objects) or CSV with `clean`, `corrupted`, `answers` and
  `distractors` (a list or one string; in CSV one string each, `answer` / `distractor` accepted),
  optional `split` (train / validation / test);
- eap-ig: CSV with `clean`, `corrupted` and `correct_idx` / `incorrect_idx` (token ids: the file
  then holds for one tokenizer only) or `label` / `distractor` strings;
- auto-circuit: JSON `{"prompts": [{"clean", "corrupt", "answers", "wrong_answers"}]}`;
- edge-pruning: JSONL with `clean` / `corrupted` each ending in one `<predict>...</predict>` span
  (the answer on the clean side, the distractor on the corrupted side);
- mib-ioi, mib-mcqa (also ARC), mib-arithmetic: MIB's rows from JSON lines, parquet or a
  `datasets` `save_to_disk` folder, with a counterfactual column (`counterfactual`).

A file is read without a tokenizer (so it is checked before any model loads); token-level checks
(single-token answers, equal clean / corrupted lengths) happen in `hap.tasks.base.tokenize`.
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from hap.tasks.base import Example, TaskError
from hap.tasks.records import content_hash, file_error, read_records
from hap.tasks.schemas import DEFAULT_COUNTERFACTUAL, FORMATS, READERS, Bad, Skip, detect_format
from hap.tasks.vocab import single_token

SPLITS = ("train", "validation", "test")
SPLIT_ALIASES = {"train": "train", "validation": "validation", "val": "validation", "test": "test"}
MAX_ROWS = 1_000_000


@dataclass(frozen=True)
class Row:
    """One usable prompt pair of a file, with its line (or record) number and its split label."""

    example: Example
    line: int
    split: str | None = None


@dataclass
class TaskFile:
    """A task file as read: its usable rows, the rows dropped and why, and what identifies it
    (content hash, format, counterfactual) so that a result names the data it came from."""

    path: Path
    format: str
    sha256: str
    rows: list[Row]
    dropped: dict[str, list[int]] = field(default_factory=dict)
    counterfactual: str | None = None
    token_ids: bool = False  # answers given as token ids: the file holds for one tokenizer
    unit: str = "line"  # what a row number counts: file lines (JSON lines, CSV) or records

    @property
    def name(self) -> str:
        return self.path.stem

    @property
    def has_splits(self) -> bool:
        return any(r.split is not None for r in self.rows)

    def record(self) -> dict[str, Any]:
        """What a result records about its task's data (and its resume key includes)."""
        return {
            "task_file": str(self.path),
            "task_sha256": self.sha256,
            "task_format": self.format,
            "counterfactual": self.counterfactual,
        }


def _split(record: Mapping, folder: str | None, path: Path, where: str) -> str | None:
    value = record.get("split", folder)
    if value in (None, ""):
        return None
    if not isinstance(value, str) or value.strip().lower() not in SPLIT_ALIASES:
        raise file_error(
            path,
            f"{where} has split={value!r}",
            f"a split is one of {', '.join(SPLITS)} (or leave the column out)",
        )
    return SPLIT_ALIASES[value.strip().lower()]


_READ: dict[tuple, TaskFile] = {}  # by (path, mtime, size, format, counterfactual)


def read_task_file(
    path: str | Path, fmt: str | None = None, counterfactual: str | None = None
) -> TaskFile:
    """`_read_task_file`, once per file version and reading (a sweep asks for every row)."""
    path = Path(path)
    try:
        stat = path.stat()
        key = (str(path.resolve()), stat.st_mtime_ns, stat.st_size, fmt, counterfactual)
    except OSError:
        return _read_task_file(path, fmt, counterfactual)  # raises its one-line error
    if key not in _READ:
        _READ[key] = _read_task_file(path, fmt, counterfactual)
    return _READ[key]


def _read_task_file(
    path: str | Path, fmt: str | None = None, counterfactual: str | None = None
) -> TaskFile:
    """Read and check a task file without a tokenizer: every row wrong in itself is refused
    (one line naming the file, the row and the fix); rows MIB's own loader filters are dropped
    and counted."""
    path = Path(path)
    if fmt is not None and fmt not in FORMATS:
        raise TaskError(f"--task-format {fmt!r}: choose one of {', '.join(FORMATS)}")
    records, document, unit = read_records(path)
    if not records:
        raise file_error(path, "has no rows", "give a file with one prompt pair per row")
    if len(records) > MAX_ROWS:
        raise file_error(
            path, f"has {len(records):,} rows", f"a task file may hold at most {MAX_ROWS:,}"
        )
    first = records[0][0]
    if not isinstance(first, Mapping):
        raise file_error(
            path, f"row 1 is a {type(first).__name__}, not an object", "give one object per row"
        )
    detected = detect_format(first, document)
    fmt = fmt or detected
    if fmt is None:
        missing = [c for c in ("clean", "corrupted", "answers", "distractors") if c not in first]
        raise file_error(
            path,
            f"its columns {sorted(first)[:8]} match no known format (this project's needs clean, "
            f"corrupted, answers, distractors: {', '.join(missing)} missing)",
            f"rename the columns, or use one of {', '.join(FORMATS)} (README: Your own task)",
        )
    looks = f"; its columns look like {detected}" if detected and detected != fmt else ""
    if counterfactual is not None and not fmt.startswith("mib-"):
        raise TaskError(f"--counterfactual applies to MIB's formats only; {path} is {fmt}")
    if counterfactual is not None and counterfactual not in first:
        names = sorted(k for k in first if k.endswith("_counterfactual"))
        raise file_error(path, f"has no column {counterfactual!r}", f"choose one of {names}")
    reader = READERS[fmt]
    rows: list[Row] = []
    dropped: dict[str, list[int]] = {}
    for record, folder, line in records:
        where = f"{unit} {line}"
        if not isinstance(record, Mapping):
            raise file_error(
                path,
                f"{where} is a {type(record).__name__}, not an object",
                "one object per row",
            )
        try:
            example = reader(record, counterfactual)
            if set(example.answers) & set(example.distractors):
                raise Bad("an answer is also a distractor")
        except Skip as reason:
            dropped.setdefault(str(reason), []).append(line)
            continue
        except (Bad, KeyError) as error:
            what = f"no column {error}" if isinstance(error, KeyError) else str(error)
            raise file_error(
                path, f"{where} ({fmt}): {what}{looks}", "fix or remove that row"
            ) from None
        rows.append(Row(example, line, _split(record, folder, path, where)))
    if not rows:
        raise file_error(
            path, f"no usable rows ({_reasons(dropped)})", "check the counterfactual column"
        )
    labelled = [r for r in rows if r.split is not None]
    if labelled and len(labelled) != len(rows):
        line = next(r.line for r in rows if r.split is None)
        raise file_error(
            path, f"{unit} {line} has no split while others do", "give every row a split or none"
        )
    return TaskFile(
        path=path,
        format=fmt,
        sha256=content_hash(path),
        rows=rows,
        dropped=dropped,
        counterfactual=(counterfactual or DEFAULT_COUNTERFACTUAL.get(fmt)),
        unit=unit,
        token_ids=any(
            isinstance(a, int) for r in rows for a in r.example.answers + r.example.distractors
        ),
    )


def _reasons(dropped: Mapping[str, list[int]]) -> str:
    return (
        "; ".join(f"{len(lines)} dropped: {reason}" for reason, lines in dropped.items()) or "none"
    )


def is_task_file(name: str) -> bool:
    """Whether `--task name` names a file (a built-in name never contains a path separator or a
    suffix; an existing path is always a file task)."""
    return Path(name).exists() or "/" in name or Path(name).suffix != ""


# --- splits --------------------------------------------------------------------------------------

FRACTIONS = {
    "n_train": 0.4,
    "n_val": 0.2,
    "n_test": 0.4,
}  # of a file's rows, where sizes are not given


def split_sizes(
    n_rows: int, n_train: int | None, n_val: int | None, n_test: int | None
) -> dict[str, int]:
    """The split sizes for a file of `n_rows` rows without a split column: each size given is
    kept; a missing train or validation size is its FRACTIONS share of the rows (rounded down),
    and a missing test size is every row left, so no row goes unused."""
    train = n_train if n_train is not None else int(FRACTIONS["n_train"] * n_rows)
    val = n_val if n_val is not None else int(FRACTIONS["n_val"] * n_rows)
    test = n_test if n_test is not None else max(0, n_rows - train - val)
    return {"n_train": train, "n_val": val, "n_test": test}


def _pick(rows: list[Row], n: int | None, seed: int, what: str, path: Path) -> list[Row]:
    if n is None:
        return rows
    if n > len(rows):
        raise file_error(
            path,
            f"has {len(rows)} {what} rows and {n} were asked for",
            f"lower the size to {len(rows)}",
        )

    return random.Random(seed).sample(rows, n)


def choose_rows(
    task_file: TaskFile, n_train: int | None, n_val: int | None, n_test: int | None, seed: int
) -> tuple[list[Row], list[Row], list[Row]]:
    """Train / validation / test rows: the file's own split column where it has one (a size
    given takes that many of the split, drawn by `seed`), else a deterministic draw by `seed`
    into the sizes (`split_sizes`), refused in one line when the file has too few rows."""

    rows, path = task_file.rows, task_file.path
    if task_file.has_splits:
        groups = {s: [r for r in rows if r.split == s] for s in SPLITS}
        sizes = (n_train, n_val, n_test)
        return tuple(  # type: ignore[return-value]
            _pick(groups[s], n, seed + i, s, path) for i, (s, n) in enumerate(zip(SPLITS, sizes))
        )
    sizes = split_sizes(len(rows), n_train, n_val, n_test)
    total = sum(sizes.values())
    if total > len(rows):
        asked = ", ".join(f"{k}={v}" for k, v in sizes.items())
        raise file_error(
            path,
            f"has {len(rows)} usable rows and {asked} asks for {total}",
            "lower --n-train / --n-val / --n-test",
        )
    order = list(rows)
    random.Random(seed).shuffle(order)
    a, b = sizes["n_train"], sizes["n_train"] + sizes["n_val"]
    return order[:a], order[a:b], order[b:total]


def token_problem(example: Example, tokenizer) -> str | None:
    """Why the engine would refuse this pair for `tokenizer` (clean and corrupted prompts of
    unequal token length; an answer or distractor that is not one known token), or None."""
    clean = len(tokenizer(example.clean, add_special_tokens=False)["input_ids"])
    corrupted = len(tokenizer(example.corrupted, add_special_tokens=False)["input_ids"])
    if clean != corrupted:
        return "clean and corrupted prompts of unequal token length"
    for answer in example.answers + example.distractors:
        if isinstance(answer, int):
            if not 0 <= answer < len(tokenizer):
                return "a token id outside the tokenizer"
            continue
        if not single_token(tokenizer, answer):
            return "an answer or distractor that is not a single token"
    return None


def usable_rows(task_file: TaskFile, tokenizer) -> TaskFile:
    """MIB's rows as MIB's own loader filters them for a tokenizer (it keeps the rows whose
    answers tokenise alike): rows the engine cannot use are dropped and counted. A researcher's
    own file (every other format) is left whole, so `tokenize` refuses a bad row by name."""
    if not task_file.format.startswith("mib-"):
        return task_file
    kept, dropped = [], {k: list(v) for k, v in task_file.dropped.items()}
    for row in task_file.rows:
        problem = token_problem(row.example, tokenizer)
        if problem is None:
            kept.append(row)
        else:
            dropped.setdefault(f"{problem} (for this tokenizer)", []).append(row.line)
    if not kept:
        raise file_error(
            task_file.path,
            f"no row is usable for this tokenizer ({_reasons(dropped)})",
            "use another model",
        )
    return replace(task_file, rows=kept, dropped=dropped)


def file_task(
    task_file: TaskFile,
    tokenizer,
    n_train: int | None = None,
    n_val: int | None = None,
    n_test: int | None = None,
    seed: int = 0,
    prepend_bos: bool | None = None,
):
    """A Task from a task file for `tokenizer`; refuses, naming the row, pairs whose clean and
    corrupted prompts differ in token length and answers that are not single tokens."""
    from hap.tasks.base import Task, tokenize

    task_file = usable_rows(task_file, tokenizer)
    parts = choose_rows(task_file, n_train, n_val, n_test, seed)
    if not parts[2]:
        raise file_error(
            task_file.path, "leaves no test rows", "give --n-test or rows with split=test"
        )
    everything = [r for part in parts for r in part]
    data = tokenize(
        [r.example for r in everything],
        tokenizer,
        prepend_bos,
        rows=[r.line for r in everything],
        source=str(task_file.path),
        unit=task_file.unit,
    )
    bounds = [0, len(parts[0]), len(parts[0]) + len(parts[1]), len(everything)]
    train, val, test = (data.subset(slice(a, b)) for a, b in zip(bounds, bounds[1:]))
    test_examples = tuple(r.example for r in parts[2])
    return Task(task_file.name, train, val, test, seed, task_file.record(), test_examples)
