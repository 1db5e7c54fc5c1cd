import json
import math

import pandas as pd
import pytest

from hap.analysis.plots import plot_all
from hap.cli import main
from hap.experiments.results import ResultsError, read_results
from hap.experiments.summary import swept_areas
from hap.experiments.sweep import SweepConfig, run_sweep


def _config(tmp_path, **changes) -> SweepConfig:
    base = dict(
        methods=("eap",),
        sparsities=(0.9, 0.96),
        seeds=(0,),
        n_train=16,
        n_test=32,
        out=tmp_path / "sweep.csv",
        device="cpu",
    )
    return SweepConfig(**{**base, **changes})


def test_sweep_writes_rows_and_metadata_and_resumes(tmp_path):
    config = _config(tmp_path)
    first = run_sweep(config, progress=False)
    assert len(first) == 2
    assert set(first["target_sparsity"]) == {0.9, 0.96}
    assert (first["sparsity"] >= first["target_sparsity"] - 1e-3).all()
    assert (first["wall_s"] > 0).all() and (first["peak_mem_mb"] > 0).all()
    meta = json.loads((tmp_path / "sweep.meta.json").read_text())["runs"]
    assert len(meta) == 1 and meta[0]["threads"] == 2 and meta[0]["cpu_count"] >= 1
    assert meta[0]["rows_by_commit"] == {first["git_commit"].iloc[0]: 2}
    assert (first["status"] == "ok").all() and first["error"].isna().all()
    assert first["git_commit"].str.len().min() >= 7  # the commit that produced each row
    assert all(json.loads(v)["torch"] for v in first["versions"])

    again = run_sweep(config, progress=False)  # nothing left to do: same rows, same timings
    pd.testing.assert_frame_equal(first, again)
    assert len(json.loads((tmp_path / "sweep.meta.json").read_text())["runs"]) == 2

    first.iloc[:1].to_csv(config.out, index=False)  # as if killed after the first run
    resumed = run_sweep(config, progress=False)
    assert len(resumed) == 2
    assert resumed.iloc[0]["wall_s"] == first.iloc[0]["wall_s"]


def test_settings_and_steps_are_recorded_and_part_of_the_resume_key(tmp_path):
    config = _config(tmp_path, methods=("ep", "eap"), sparsities=(0.9,), settings={"steps": "3"})
    first = run_sweep(config, progress=False)
    ep = first[first["method"] == "ep"].iloc[0]
    assert ep["steps"] == 3 and ep["stopped"] == "fixed"
    assert json.loads(ep["config"])["steps"] == 3 and json.loads(ep["settings"]) == {"steps": "3"}
    assert math.isnan(first[first["method"] == "eap"].iloc[0]["steps"])
    more = run_sweep(
        _config(tmp_path, methods=("ep",), sparsities=(0.9,), settings={"steps": "4"}),
        progress=False,
    )  # other settings: a new row, not a resumed one
    assert sorted(more["steps"].dropna()) == [3, 4]
    with pytest.raises(ValueError, match="no method among eap has a setting 'steps'"):
        run_sweep(_config(tmp_path, settings={"steps": "4"}), progress=False)


def test_corrupt_results_are_refused_and_kept(tmp_path):
    path = tmp_path / "sweep.csv"
    path.write_bytes(b"\xff\xfe\x00garbage\n\x00\x00")
    with pytest.raises(ResultsError, match="corrupt"):
        run_sweep(_config(tmp_path), progress=False)
    assert path.read_bytes() == b"\xff\xfe\x00garbage\n\x00\x00"
    path.write_text("a,b\n1,2\n")
    with pytest.raises(ResultsError, match="not a sweep results file"):
        read_results(path)


def test_bad_sweep_input_fails_before_any_work(tmp_path):
    with pytest.raises(ValueError, match="unknown method"):
        run_sweep(_config(tmp_path, methods=("nope",)), progress=False)
    with pytest.raises(ValueError, match="sparsity must be in"):
        run_sweep(_config(tmp_path, sparsities=(1.2,)), progress=False)
    assert not (tmp_path / "sweep.csv").exists()


def test_swept_areas_by_hand():
    table = pd.DataFrame(
        {
            "method": ["m"] * 4,
            "task": ["ioi"] * 4,
            "seed": [0] * 4,
            "sparsity": [0.9, 0.95, 0.99, 0.97],
            "faithfulness": [1.0, 0.5, 0.0, float("nan")],
            "status": ["ok", "ok", "ok", "failed"],  # a failed run is no point of the curve
        }
    )
    areas = swept_areas(table).iloc[0]
    # x = 0.01, 0.05, 0.1: trapezoids 0.04 * 0.25 + 0.05 * 0.75 over a span of 0.09
    assert math.isclose(areas["faith_area"], (0.04 * 0.25 + 0.05 * 0.75) / 0.09)
    assert math.isclose(areas["gap_area"], (0.04 * 0.75 + 0.05 * 0.25) / 0.09)


def test_plots_are_written(tmp_path):
    rows = [
        {
            "method": m,
            "task": "ioi",
            "model": "hap-default",
            "seed": s,
            "target_sparsity": t,
            "sparsity": t,
            "kl": 1 + t + s,
            "logit_diff": 5 - t,
            "full_logit_diff": 12.0,
            "wall_s": 1.0 + s,
            "attribution_s": 0.2,
            "pruning_s": 1.0,
            "device": "cpu",
            "threads": 2,
        }
        for m in ("eap", "hap")
        for s in (0, 1)
        for t in (0.94, 0.98)
    ]
    paths = plot_all(pd.DataFrame(rows), tmp_path)
    assert [p.name for p in paths] == [
        "kl_vs_sparsity.png",
        "logit_diff_vs_sparsity.png",
        "runtime.png",
        "hap_stages.png",
    ]
    assert all(p.stat().st_size > 10_000 for p in paths)


def test_cli_discover_json(capsys, tmp_path):
    out = tmp_path / "circuit.json"
    code = main(
        [
            "discover",
            "--method",
            "eap",
            "--sparsity",
            "0.95",
            "--n-test",
            "32",
            "--device",
            "cpu",
            "--out",
            str(out),
            "--json",
        ]
    )
    assert code == 0
    result = json.loads(capsys.readouterr().out)
    for key in (
        "method",
        "task",
        "model",
        "target_sparsity",
        "sparsity",
        "n_edges",
        "kl",
        "logit_diff",
        "accuracy",
        "faithfulness",
        "wall_s",
        "attribution_s",
        "steps",
        "config",
    ):
        assert key in result
    assert result["n_edges"] == len(json.loads(out.read_text())["edges"])
    assert result["steps"] is None and result["config"]["metric"] == "logit_diff"


def test_cli_discover_set_fixes_the_budget_and_records_it(capsys, tmp_path):
    out = tmp_path / "circuit.json"
    args = ["discover", "--method", "hap", "--n-test", "16", "--device", "cpu", "--json"]
    assert (
        main(args + ["--set", "steps=4", "--set", "candidate_multiple=2", "--out", str(out)]) == 0
    )
    result = json.loads(capsys.readouterr().out)
    assert result["steps"] == 4 and result["stopped"] == "fixed"
    assert result["config"]["search"]["steps"] == 4 and result["config"]["candidate_multiple"] == 2
    saved = json.loads(out.read_text())
    assert saved["steps"] == 4 and saved["config"] == result["config"]
    assert saved["details"]["n_candidates"] == 2 * result["n_edges"]


def test_cli_bad_input_is_one_line(capsys):
    assert main(["discover", "--method", "nope", "--device", "cpu"]) == 2
    assert main(["discover", "--method", "eap", "--sparsity", "1.5", "--device", "cpu"]) == 2
    assert main(["discover", "--method", "eap", "--model", "./missing", "--device", "cpu"]) == 2
    assert main(["discover", "--method", "ep", "--set", "steps=many", "--device", "cpu"]) == 2
    assert main(["bench", "--methods", "eap", "--set", "lr=0.1", "--device", "cpu"]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 5 and all(line.startswith("hap: error: ") for line in lines)
    assert "choose one of" in lines[0] and "sparsity" in lines[1] and "does not exist" in lines[2]
    assert "steps='many' is not a valid int" in lines[3]
    assert "no method among eap has a setting 'lr'" in lines[4]
