"""The figures from the committed reference results: each drawn line, band and bar is checked
against the same statistic computed here with pandas from the same data."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from matplotlib.colors import to_rgb
from matplotlib.figure import Figure

from hap.analysis.plots import _methods, _palette, plot_all, plot_frontier
from hap.experiments.results import read_results

REFERENCE = Path(__file__).resolve().parents[1] / "results" / "reference"


@pytest.fixture
def saved(monkeypatch) -> dict[str, Figure]:
    """Every figure saved during the test, by file name."""
    figures: dict[str, Figure] = {}
    savefig = Figure.savefig

    def record(fig, path, **kwargs):
        figures[Path(path).name] = fig
        return savefig(fig, path, **kwargs)

    monkeypatch.setattr(Figure, "savefig", record)
    return figures


@pytest.fixture(scope="module")
def sweep() -> pd.DataFrame:
    table = read_results(REFERENCE / "sweep.csv")
    return table[table["status"] == "ok"]


def _finite(xy: np.ndarray) -> np.ndarray:
    return xy[np.isfinite(xy).all(axis=1)]


def test_sweep_curves_are_seed_means_with_a_band_over_the_seeds_range(sweep, saved, tmp_path):
    assert sweep["seed"].nunique() == 3  # the case the range band was chosen for
    paths = plot_all(sweep, tmp_path)
    assert [p.name for p in paths] == [
        "kl_vs_sparsity.png",
        "logit_diff_vs_sparsity.png",
        "runtime.png",
        "hap_stages.png",
    ]
    assert all(p.stat().st_size > 10_000 for p in paths)
    colors = _palette(_methods(sweep))
    for name, column in (
        ("kl_vs_sparsity.png", "kl"),
        ("logit_diff_vs_sparsity.png", "logit_diff"),
    ):
        ax = saved[name].axes[0]
        assert ax.get_yscale() == ("log" if column == "kl" else "linear")
        assert "bands: the seeds' range (min-max)" in ax.get_title()
        for method, color in colors.items():
            stats = (
                sweep[sweep["method"] == method]
                .groupby("target_sparsity")[column]
                .agg(["mean", "min", "max"])
            )
            (line,) = [
                line
                for line in ax.lines
                if len(line.get_xdata()) and to_rgb(line.get_color()) == to_rgb(color)
            ]
            # the arithmetic mean over seeds (not the geometric one a log axis would give)
            np.testing.assert_allclose(line.get_xdata(), stats.index)
            np.testing.assert_allclose(line.get_ydata(), stats["mean"])
            (band,) = [
                c for c in ax.collections if to_rgb(c.get_facecolor()[0][:3]) == to_rgb(color)
            ]
            vertices = band.get_paths()[0].vertices
            for sparsity, row in stats.iterrows():
                ys = vertices[np.isclose(vertices[:, 0], sparsity), 1]
                assert ys.min() == pytest.approx(row["min"])
                assert ys.max() == pytest.approx(row["max"])


def test_runtime_is_a_mean_point_with_a_range_bar_and_every_seed(sweep, saved, tmp_path):
    plot_all(sweep, tmp_path)
    ax = saved["runtime.png"].axes[0]
    at = sweep[sweep["target_sparsity"] == 0.94]
    order = _methods(at)
    assert [t.get_text() for t in ax.get_xticklabels()] == order
    assert ax.get_yscale() == "log"
    for i, method in enumerate(order):
        walls = at[at["method"] == method]["wall_s"]
        at_i = [
            (line.get_marker(), _finite(line.get_xydata()))
            for line in ax.lines
            if to_rgb(line.get_color()) == to_rgb(_palette(order)[method])
        ]
        (mean,) = [xy[:, 1] for marker, xy in at_i if marker == "o"]
        assert mean == pytest.approx([walls.mean()])
        bar = np.concatenate(
            [xy[np.isclose(xy[:, 0], i), 1] for marker, xy in at_i if marker != "o"]
        )
        assert (bar.min(), bar.max()) == pytest.approx((walls.min(), walls.max()))
        dots = ax.collections[i].get_offsets()[:, 1]
        assert sorted(dots) == pytest.approx(sorted(walls))


def test_frontier_bars_span_the_seeds_in_kl_and_time(saved, tmp_path):
    summary = json.loads((REFERENCE / "frontier_ioi_94.json").read_text())
    plot_frontier(summary, tmp_path / "frontier.png")
    ax = saved["frontier.png"].axes[0]
    points = pd.DataFrame(summary["points"])
    containers = {c.get_label(): c for c in ax.containers}
    assert set(containers) == {"eap (no step budget)", "eap-ig (no step budget)", "ep", "hap"}
    for method in ("ep", "hap"):
        stats = (
            points[points["method"] == method]
            .groupby("steps")
            .agg(
                wall=("wall_s", "mean"),
                wall_lo=("wall_s", "min"),
                wall_hi=("wall_s", "max"),
                kl=("kl", "mean"),
                kl_lo=("kl", "min"),
                kl_hi=("kl", "max"),
            )
        )
        line, _, (xbars, ybars) = containers[method].lines
        np.testing.assert_allclose(line.get_xydata(), stats[["wall", "kl"]])
        np.testing.assert_allclose(
            [s[:, 0] for s in xbars.get_segments()], stats[["wall_lo", "wall_hi"]]
        )
        np.testing.assert_allclose(
            [s[:, 1] for s in ybars.get_segments()], stats[["kl_lo", "kl_hi"]]
        )
    assert "per seed: not reached, 0.88, not reached" in ax.get_title()
