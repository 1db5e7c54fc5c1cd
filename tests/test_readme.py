"""The README's Python example runs as written."""

from __future__ import annotations

import json
import re
from pathlib import Path

README = Path(__file__).parent.parent / "README.md"


def test_readme_example_runs(tmp_path, monkeypatch, capsys):
    text = README.read_text()
    block = re.search(r"<!-- example:.*?-->\n```python\n(.*?)```", text, re.S)
    assert block, "the README's example block is missing"
    code = block.group(1)
    assert len(code.strip().splitlines()) <= 14
    monkeypatch.chdir(tmp_path)
    exec(compile(code, "README.md", "exec"), {})
    printed = capsys.readouterr().out
    assert re.match(r"\d+ edges: KL \d+\.\d{3}, faithfulness -?\d+\.\d{3}", printed)
    saved = json.loads((tmp_path / "circuit.json").read_text())
    assert saved["cfg"]["n_layers"] == 4 and len(saved["edges"]) == 1519
    assert sum(e["in_graph"] for e in saved["edges"].values()) == 91
