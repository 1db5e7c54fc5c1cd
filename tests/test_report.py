"""The README's result tables are generated from the committed result files (`hap report`): a
block that disagrees with its data fails here."""

from __future__ import annotations

from pathlib import Path

from hap.analysis.report import blocks, fill_readme, html_page, readme_blocks
from hap.cli import main

ROOT = Path(__file__).resolve().parents[1]
REFERENCE = ROOT / "results" / "reference"


def test_the_readme_blocks_are_what_the_reference_files_generate():
    """The README's and the docs pages' generated blocks, all of them, match the data."""
    shown = {}
    for page in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        for name, body in readme_blocks(page.read_text()).items():
            shown[name] = body
            assert body == blocks(REFERENCE)[name], (
                f"{page.name} block {name} differs: run hap report --readme README.md docs/*.md"
            )
    assert set(shown) == {
        "headline",
        "sweep",
        "selection",
        "frontier_ioi_94",
        "frontier_ioi_98",
        "mib",
    }


def test_check_fails_on_an_edited_figure_and_refresh_restores_it(tmp_path, capsys):
    readme = tmp_path / "README.md"
    text = (ROOT / "README.md").read_text()
    row = readme_blocks(text)["sweep"].splitlines()[2]  # the first method's first target
    cells = row.split(" | ")
    cells[5] = "0.000" if cells[5] != "0.000" else "1.000"  # its KL
    edited = text.replace(row, " | ".join(cells))
    assert edited != text
    readme.write_text(edited)
    assert main(["report", str(REFERENCE), "--readme", str(readme), "--check"]) == 1
    assert "sweep" in capsys.readouterr().err
    assert main(["report", str(REFERENCE), "--readme", str(readme), "--json"]) == 0
    assert readme.read_text() == text
    assert fill_readme(text, blocks(REFERENCE)) == text


def test_the_html_page_embeds_tables_and_plots():
    page = html_page(REFERENCE, ROOT / "plots" / "reference")
    assert page.count("<table>") == 5
    assert "data:image/png;base64," in page and "frontier_ioi_94.png" in page
