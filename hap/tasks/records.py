"""The records of a task file, whatever holds them: JSON, JSON lines, CSV (delimiter sniffed),
parquet or a `datasets` `save_to_disk` folder, each record with where it sits in the file, and
the file's content hash. Malformed containers are one-line errors naming the file and the line.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
from pathlib import Path
from typing import Any

from hap.tasks.base import TaskError
from hap.tasks.schemas import FORMATS

MAX_FILE_BYTES = 2_000_000_000  # a task file above 2 GB is refused before it is read


def file_error(path: Path, what: str, fix: str) -> TaskError:
    return TaskError(f"task file {path}: {what}; {fix}")


def content_hash(path: Path) -> str:
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
        raise file_error(
            path, "reading a save_to_disk folder needs pyarrow", "pip install pyarrow"
        ) from error
    files = sorted(path.rglob("*.arrow"))
    if not files:
        raise file_error(
            path, "a folder without .arrow files", "give a datasets save_to_disk folder"
        )
    records: list[tuple[dict, str | None]] = []
    for file in files:
        split = file.parent.name if file.parent != path else None
        try:
            with pa.memory_map(str(file)) as source:
                table = pa.ipc.open_stream(source).read_all()
        except (pa.ArrowInvalid, OSError) as error:
            raise file_error(
                file, f"not an Arrow stream ({error})", "re-save it with save_to_disk"
            ) from None
        records += [(row, split) for row in table.to_pylist()]
    return records


def _parquet_records(path: Path) -> list[dict]:
    try:
        import pyarrow.parquet as pq
    except ImportError as error:  # pragma: no cover
        raise file_error(path, "reading parquet needs pyarrow", "pip install pyarrow") from error
    try:
        return pq.read_table(path).to_pylist()
    except Exception as error:  # pyarrow raises several types for a broken file
        raise file_error(
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
                    raise file_error(
                        path, f"line {number} is not JSON ({error.msg})", "fix that line"
                    ) from None
                lines.append(number)
            return records, lines
        raise file_error(
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
        raise file_error(
            path,
            "not JSON, JSON lines or a CSV with a header",
            f"write one of the formats {', '.join(FORMATS)} (README: Your own task)",
        )
    reader.fieldnames = [name.strip() for name in reader.fieldnames]
    records, lines = [], []
    for row in reader:
        if None in row:  # more fields than the header: an unquoted delimiter
            raise file_error(
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
        raise file_error(path, "is empty", "give a file with one prompt pair per row")
    if size > MAX_FILE_BYTES:
        raise file_error(path, f"is {size:,} bytes", "a task file may hold at most 2 GB")
    if path.suffix == ".parquet":
        return numbered(_parquet_records(path)), None, "record"
    raw = path.read_bytes()
    if b"\x00" in raw[:8192]:
        raise file_error(
            path, "is binary", "give JSON, JSON lines, CSV, parquet or a save_to_disk folder"
        )
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        raise file_error(path, f"is not UTF-8 (byte {error.start})", "save it as UTF-8") from None
    data, lines = _text_records(path, text)
    if lines is not None:
        return [(r, None, line) for r, line in zip(data, lines)], None, "line"
    if isinstance(data, dict):
        if isinstance(data.get("prompts"), list):
            return numbered(data["prompts"]), data, "record"
        return [(data, None, 1)], None, "line"  # JSON lines of one row
    if not isinstance(data, list):
        raise file_error(path, f"holds a JSON {type(data).__name__}", "give a list of rows")
    return numbered(data), None, "record"
