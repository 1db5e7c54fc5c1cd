"""Task files: a researcher's own prompt pairs, and the other tools' dataset formats, read into
the same `Example` list the built-in generators write, so the rest of the pipeline never knows
where a task came from.

Formats (detected by content; `fmt` overrides):
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

import csv
import hashlib
import io
import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from hap.tasks.base import Example, TaskError
from hap.tasks.vocab import single_token

FORMATS = (
    "native",
    "eap-ig",
    "auto-circuit",
    "edge-pruning",
    "mib-ioi",
    "mib-mcqa",
    "mib-arithmetic",
)
SPLITS = ("train", "validation", "test")
SPLIT_ALIASES = {"train": "train", "validation": "validation", "val": "validation", "test": "test"}
DEFAULT_COUNTERFACTUAL = {
    "mib-ioi": "s2_io_flip_counterfactual",
    "mib-mcqa": "symbol_counterfactual",
    "mib-arithmetic": "random_counterfactual",
}
MAX_FILE_BYTES = 2_000_000_000  # a task file above 2 GB is refused before it is read
MAX_ROWS = 1_000_000
PREDICT = re.compile(r"<predict>(.*?)</predict>\s*$", re.DOTALL)


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


def _fail(path: Path, what: str, fix: str) -> TaskError:
    return TaskError(f"task file {path}: {what}; {fix}")


# --- raw records ---------------------------------------------------------------------------------


def _hash(path: Path) -> str:
    digest = hashlib.sha256()
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    for file in files:
        digest.update(str(file.relative_to(path) if path.is_dir() else file.name).encode())
        with file.open("rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()


def _arrow_records(path: Path) -> list[tuple[dict, str | None]]:
    """A `datasets` `save_to_disk` folder: Arrow stream files, in split subfolders for a
    DatasetDict (the subfolder's name becomes the split)."""
    try:
        import pyarrow as pa
    except ImportError as error:  # pragma: no cover - pandas' own dependency here
        raise _fail(
            path, "reading a save_to_disk folder needs pyarrow", "pip install pyarrow"
        ) from error
    files = sorted(path.rglob("*.arrow"))
    if not files:
        raise _fail(path, "a folder without .arrow files", "give a datasets save_to_disk folder")
    records: list[tuple[dict, str | None]] = []
    for file in files:
        split = file.parent.name if file.parent != path else None
        try:
            with pa.memory_map(str(file)) as source:
                table = pa.ipc.open_stream(source).read_all()
        except (pa.ArrowInvalid, OSError) as error:
            raise _fail(
                file, f"not an Arrow stream ({error})", "re-save it with save_to_disk"
            ) from None
        records += [(row, split) for row in table.to_pylist()]
    return records


def _parquet_records(path: Path) -> list[dict]:
    try:
        import pyarrow.parquet as pq
    except ImportError as error:  # pragma: no cover
        raise _fail(path, "reading parquet needs pyarrow", "pip install pyarrow") from error
    try:
        return pq.read_table(path).to_pylist()
    except Exception as error:  # pyarrow raises several types for a broken file
        raise _fail(
            path, f"not a readable parquet file ({type(error).__name__})", "check the file"
        ) from None


def _text_records(path: Path, text: str) -> tuple[list[dict] | dict, list[int] | None]:
    """JSON (one document), JSON lines, or CSV with a header, tried in that order by content;
    with each record's line in the file for JSON lines and CSV (None for a JSON document)."""
    stripped = text.lstrip()
    if stripped.startswith(("[", "{")):
        try:
            return json.loads(text), None
        except json.JSONDecodeError as error:
            whole = error
        if stripped.startswith("{"):  # JSON lines
            records, lines = [], []
            for number, line in enumerate(text.splitlines(), 1):
                if not line.strip():
                    continue
                try:
                    records.append(json.loads(line))
                except json.JSONDecodeError as error:
                    raise _fail(
                        path, f"line {number} is not JSON ({error.msg})", "fix that line"
                    ) from None
                lines.append(number)
            return records, lines
        raise _fail(
            path,
            f"is not valid JSON ({whole.msg} at line {whole.lineno}, column {whole.colno})",
            "fix the JSON (a trailing comma?)",
        )
    try:
        dialect = csv.Sniffer().sniff(text[:4096], delimiters=",\t;")
    except csv.Error:
        dialect = csv.excel
    reader = csv.DictReader(io.StringIO(text), dialect=dialect)
    if not reader.fieldnames or len(reader.fieldnames) < 2:
        raise _fail(
            path,
            "not JSON, JSON lines or a CSV with a header",
            f"write one of the formats {', '.join(FORMATS)} (README: Your own task)",
        )
    reader.fieldnames = [name.strip() for name in reader.fieldnames]
    records, lines = [], []
    for row in reader:
        if None in row:  # more fields than the header: an unquoted delimiter
            raise _fail(
                path,
                f"line {reader.line_num} has {len(reader.fieldnames) + len(row[None])} fields and "
                f"the header {len(reader.fieldnames)}",
                "quote fields that contain the delimiter",
            )
        records.append(dict(row))
        lines.append(reader.line_num)
    return records, lines


def read_records(path: Path) -> tuple[list[tuple[dict, str | None, int]], Any, str]:
    """The file's records, each with the split its folder names (save_to_disk) and where it is
    (its line in a JSON-lines or CSV file, else its record number: the third value says
    which), and for auto-circuit's JSON the document around them."""

    def numbered(records: list, splits=None) -> list[tuple[dict, str | None, int]]:
        splits = splits or [None] * len(records)
        return [(r, split, i) for i, (r, split) in enumerate(zip(records, splits), 1)]

    if path.is_dir():
        arrow = _arrow_records(path)
        return numbered([r for r, _ in arrow], [s for _, s in arrow]), None, "record"
    if not path.exists():
        raise TaskError(f"task file {path} does not exist; give a built-in task name or a file")
    size = path.stat().st_size
    if size == 0:
        raise _fail(path, "is empty", "give a file with one prompt pair per row")
    if size > MAX_FILE_BYTES:
        raise _fail(path, f"is {size:,} bytes", "a task file may hold at most 2 GB")
    if path.suffix == ".parquet":
        return numbered(_parquet_records(path)), None, "record"
    raw = path.read_bytes()
    if b"\x00" in raw[:8192]:
        raise _fail(
            path, "is binary", "give JSON, JSON lines, CSV, parquet or a save_to_disk folder"
        )
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        raise _fail(path, f"is not UTF-8 (byte {error.start})", "save it as UTF-8") from None
    data, lines = _text_records(path, text)
    if lines is not None:
        return [(r, None, line) for r, line in zip(data, lines)], None, "line"
    if isinstance(data, dict):
        if isinstance(data.get("prompts"), list):
            return numbered(data["prompts"]), data, "record"
        return [(data, None, 1)], None, "line"  # JSON lines of one row
    if not isinstance(data, list):
        raise _fail(path, f"holds a JSON {type(data).__name__}", "give a list of rows")
    return numbered(data), None, "record"


# --- formats -------------------------------------------------------------------------------------


def detect_format(record: Mapping, document: Any = None) -> str | None:
    """The format a record's keys say it is in, or None."""
    keys = set(record)
    if document is not None and {"clean", "corrupt"} <= keys:
        return "auto-circuit"
    if {"clean", "corrupted"} <= keys:
        if keys & {"answers", "answer"}:
            return "native"
        if keys & {"correct_idx", "label"}:
            return "eap-ig"
        if "<predict>" in str(record.get("clean", "")):
            return "edge-pruning"
        return None
    if "prompt" in keys:
        metadata = record.get("metadata")
        if isinstance(metadata, Mapping) and "indirect_object" in metadata:
            return "mib-ioi"
        if {"choices", "answerKey"} <= keys:
            return "mib-mcqa"
        if "label" in keys and any(k.endswith("_counterfactual") for k in keys):
            return "mib-arithmetic"
    return None


class Skip(Exception):
    """A row a reader drops, with the reason (MIB's filters); counted and reported."""


class Bad(Exception):
    """A row that is wrong: the file is refused, naming the row."""


def _strings(value: Any, column: str, ids: bool = False) -> tuple[str | int, ...]:
    """One string, or a list of them (or token ids where `ids`), as a non-empty tuple."""
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("[") and text.endswith("]"):  # a list written into a CSV cell
            try:
                value = json.loads(text)
            except json.JSONDecodeError:
                value = [value]
        else:
            value = [value]
    if isinstance(value, int | float) and not isinstance(value, bool):
        value = [value]
    if not isinstance(value, list) or not value:
        raise Bad(f"{column} must be a string or a non-empty list")
    out: list[str | int] = []
    for item in value:
        if isinstance(item, str) and item != "":
            out.append(item)
        elif (
            ids
            and isinstance(item, int | float)
            and not isinstance(item, bool)
            and float(item).is_integer()
        ):
            out.append(int(item))
        else:
            raise Bad(f"{column} holds {item!r}, not a non-empty string")
    return tuple(out)


def _text(record: Mapping, column: str) -> str:
    value = record.get(column)
    if not isinstance(value, str) or not value.strip():
        raise Bad(f"{column} is missing or empty")
    return value


def _token_id(value: Any, column: str) -> int:
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise Bad(f"{column}={value!r} is not a token id") from None
    if not number.is_integer() or number < 0:
        raise Bad(f"{column}={value!r} is not a token id")
    return int(number)


def _native(record: Mapping, _cf: str | None) -> Example:
    answers = record.get("answers", record.get("answer"))
    distractors = record.get("distractors", record.get("distractor"))
    if distractors is None or distractors == "":
        raise Bad("no distractors: the logit difference needs one (column distractors)")
    return Example(
        _text(record, "clean"),
        _text(record, "corrupted"),
        _strings(answers, "answers"),
        _strings(distractors, "distractors"),
    )


def _eap_ig(record: Mapping, _cf: str | None) -> Example:
    clean, corrupted = _text(record, "clean"), _text(record, "corrupted")
    if record.get("correct_idx") not in (None, ""):
        if record.get("incorrect_idx") in (None, ""):
            raise Bad("correct_idx without incorrect_idx: the logit difference needs both")
        return Example(
            clean,
            corrupted,
            (_token_id(record["correct_idx"], "correct_idx"),),
            (_token_id(record["incorrect_idx"], "incorrect_idx"),),
        )
    distractor = record.get("distractor", record.get("incorrect_label"))
    if distractor in (None, ""):
        raise Bad("label without distractor: the logit difference needs both")
    return Example(
        clean, corrupted, _strings(record["label"], "label"), _strings(distractor, "distractor")
    )


def _auto_circuit(record: Mapping, _cf: str | None) -> Example:
    return Example(
        _text(record, "clean"),
        _text(record, "corrupt"),
        _strings(record.get("answers"), "answers", ids=True),
        _strings(record.get("wrong_answers"), "wrong_answers", ids=True),
    )


def _edge_pruning(record: Mapping, _cf: str | None) -> Example:
    parts = []
    for column in ("clean", "corrupted"):
        text = _text(record, column)
        match = PREDICT.search(text)
        if not match or text.count("<predict>") != 1:
            raise Bad(f"{column} needs exactly one <predict>...</predict> span, at its end")
        parts.append((text[: match.start()], match.group(1)))
    (clean, answer), (corrupted, distractor) = parts
    if not answer or not distractor:
        raise Bad("an empty <predict></predict> span")
    return Example(clean, corrupted, (answer,), (distractor,))


def _counterfactual(record: Mapping, cf: str) -> Mapping:
    value = record.get(cf)
    if value is None:
        raise Skip(f"no {cf}")
    if not isinstance(value, Mapping) or not isinstance(value.get("prompt"), str):
        raise Bad(f"{cf} is not a struct with a prompt")
    return value


def _choice(row: Mapping, where: str) -> str:
    choices, key = row.get("choices"), row.get("answerKey")
    labels = choices.get("label") if isinstance(choices, Mapping) else None
    if not isinstance(labels, list) or not isinstance(key, int) or not 0 <= key < len(labels):
        raise Bad(f"{where}choices.label[answerKey] does not exist")
    return str(labels[key])


def _mib_ioi(record: Mapping, cf: str | None) -> Example:
    counterfactual = _counterfactual(record, cf or DEFAULT_COUNTERFACTUAL["mib-ioi"])
    metadata = record["metadata"]
    io_, subject = metadata.get("indirect_object"), metadata.get("subject")
    if not isinstance(io_, str) or not isinstance(subject, str):
        raise Bad("metadata.indirect_object / metadata.subject are not strings")
    return Example(
        _text(record, "prompt"), counterfactual["prompt"], (" " + io_,), (" " + subject,)
    )


def _mib_mcqa(record: Mapping, cf: str | None) -> Example:
    name = cf or DEFAULT_COUNTERFACTUAL["mib-mcqa"]
    counterfactual = _counterfactual(record, name)
    answer = _choice(record, "")
    distractor = _choice(counterfactual, f"{name}.")
    if answer == distractor:
        raise Skip("the counterfactual's answer equals the clean answer")
    return Example(_text(record, "prompt"), counterfactual["prompt"], (answer,), (distractor,))


def _mib_arithmetic(record: Mapping, cf: str | None) -> Example:
    name = cf or DEFAULT_COUNTERFACTUAL["mib-arithmetic"]
    counterfactual = _counterfactual(record, name)
    label, other = record.get("label"), counterfactual.get("label")
    if label is None or other is None:
        raise Skip("no label")
    if str(label) == str(other):
        raise Skip("the counterfactual's label equals the clean label")
    return Example(_text(record, "prompt"), counterfactual["prompt"], (str(label),), (str(other),))


READERS: dict[str, Callable[[Mapping, str | None], Example]] = {
    "native": _native,
    "eap-ig": _eap_ig,
    "auto-circuit": _auto_circuit,
    "edge-pruning": _edge_pruning,
    "mib-ioi": _mib_ioi,
    "mib-mcqa": _mib_mcqa,
    "mib-arithmetic": _mib_arithmetic,
}


def _split(record: Mapping, folder: str | None, path: Path, where: str) -> str | None:
    value = record.get("split", folder)
    if value in (None, ""):
        return None
    if not isinstance(value, str) or value.strip().lower() not in SPLIT_ALIASES:
        raise _fail(
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
        raise _fail(path, "has no rows", "give a file with one prompt pair per row")
    if len(records) > MAX_ROWS:
        raise _fail(
            path, f"has {len(records):,} rows", f"a task file may hold at most {MAX_ROWS:,}"
        )
    first = records[0][0]
    if not isinstance(first, Mapping):
        raise _fail(
            path, f"row 1 is a {type(first).__name__}, not an object", "give one object per row"
        )
    detected = detect_format(first, document)
    fmt = fmt or detected
    if fmt is None:
        missing = [c for c in ("clean", "corrupted", "answers", "distractors") if c not in first]
        raise _fail(
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
        raise _fail(path, f"has no column {counterfactual!r}", f"choose one of {names}")
    reader = READERS[fmt]
    rows: list[Row] = []
    dropped: dict[str, list[int]] = {}
    for record, folder, line in records:
        where = f"{unit} {line}"
        if not isinstance(record, Mapping):
            raise _fail(
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
            raise _fail(path, f"{where} ({fmt}): {what}{looks}", "fix or remove that row") from None
        rows.append(Row(example, line, _split(record, folder, path, where)))
    if not rows:
        raise _fail(
            path, f"no usable rows ({_reasons(dropped)})", "check the counterfactual column"
        )
    labelled = [r for r in rows if r.split is not None]
    if labelled and len(labelled) != len(rows):
        line = next(r.line for r in rows if r.split is None)
        raise _fail(
            path, f"{unit} {line} has no split while others do", "give every row a split or none"
        )
    return TaskFile(
        path=path,
        format=fmt,
        sha256=_hash(path),
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
        raise _fail(
            path,
            f"has {len(rows)} {what} rows and {n} were asked for",
            f"lower the size to {len(rows)}",
        )
    import random

    return random.Random(seed).sample(rows, n)


def choose_rows(
    task_file: TaskFile, n_train: int | None, n_val: int | None, n_test: int | None, seed: int
) -> tuple[list[Row], list[Row], list[Row]]:
    """Train / validation / test rows: the file's own split column where it has one (a size
    given takes that many of the split, drawn by `seed`), else a deterministic draw by `seed`
    into the sizes (`split_sizes`), refused in one line when the file has too few rows."""
    import random

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
        raise _fail(
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
        raise _fail(
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
        raise _fail(task_file.path, "leaves no test rows", "give --n-test or rows with split=test")
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
