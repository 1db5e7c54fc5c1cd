"""The results file under failure: kill -9 of a real `hap bench` and a rerun, a cut-off line,
a search whose loss turns NaN, and resume keys that include every setting."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pandas as pd

from hap.experiments.results import append_row, read_results
from hap.experiments.sweep import SweepConfig, run_sweep
from hap.search import masks

BENCH = [
    sys.executable,
    "-m",
    "hap.cli",
    "bench",
    "--methods",
    "eap,ep",
    "--sparsities",
    "0.9,0.95",
    "--seeds",
    "1",
    "--set",
    "steps=40",
    "--n-test",
    "16",
    "--device",
    "cpu",
    "--threads",
    "1",
    "--quiet",
]


def _rows(path) -> int:
    if not path.exists():
        return 0
    return max(0, path.read_text().count("\n") - 1)


def test_kill_9_mid_sweep_then_rerun_loses_and_duplicates_nothing(tmp_path):
    out, plots = tmp_path / "sweep.csv", tmp_path / "plots"
    argv = BENCH + ["--out", str(out), "--plots", str(plots)]
    worker = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while _rows(out) < 1 and time.monotonic() < deadline and worker.poll() is None:
        time.sleep(0.05)
    time.sleep(0.3)  # the next run is in flight
    os.kill(worker.pid, signal.SIGKILL)
    worker.wait()
    before = read_results(out)
    assert 1 <= len(before) < 4, "the kill should land mid-sweep"
    assert _rows(out) == len(before)  # every line on disk is a whole row

    finished = subprocess.run(argv, capture_output=True, text=True, timeout=300)
    assert finished.returncode == 0, finished.stderr
    after = read_results(out)
    assert len(after) == 4 and after["run_key"].is_unique
    assert set(zip(after["method"], after["target_sparsity"])) == {
        (m, s) for m in ("eap", "ep") for s in (0.9, 0.95)
    }
    kept = after.set_index("run_key").loc[before["run_key"]]
    pd.testing.assert_series_equal(
        kept["wall_s"].reset_index(drop=True), before["wall_s"], check_names=False
    )  # finished rows were skipped, not redone


def test_a_cut_off_line_is_no_row_and_is_cut_before_the_next(tmp_path):
    config = SweepConfig(
        methods=("eap",), sparsities=(0.9,), seeds=(0,), n_train=16, n_test=16,
        out=tmp_path / "sweep.csv", device="cpu",
    )  # fmt: skip
    first = run_sweep(config, progress=False)
    with open(config.out, "a") as f:
        f.write("eap,ioi,hap-default,0,0.95,{},abc")  # a row killed half-written
    assert len(read_results(config.out)) == 1
    append_row(config.out, first.iloc[0].to_dict())
    table = read_results(config.out)
    assert len(table) == 2 and not config.out.read_text().count("abc")


def test_a_nan_search_is_a_failed_row_and_the_sweep_goes_on(tmp_path, monkeypatch, capsys):
    real = masks.metrics.kl_divergence
    calls = {"n": 0}

    def nan_on_third_step(full, circuit):
        calls["n"] += 1
        value = real(full, circuit)
        return value * float("nan") if calls["n"] == 3 else value

    monkeypatch.setattr(masks.metrics, "kl_divergence", nan_on_third_step)
    config = SweepConfig(
        methods=("ep", "eap"), sparsities=(0.9,), seeds=(0,), n_train=16, n_test=16,
        out=tmp_path / "sweep.csv", device="cpu", settings={"steps": "5"},
    )  # fmt: skip
    table = run_sweep(config, progress=False)
    ep = table[table["method"] == "ep"].iloc[0]
    assert ep["status"] == "failed" and "loss became nan at step 3" in ep["error"]
    assert pd.isna(ep["kl"]) and pd.isna(ep["logit_diff"])  # never written as a number
    assert table[table["method"] == "eap"].iloc[0]["status"] == "ok"
    assert "failed" in capsys.readouterr().err
    again = run_sweep(config, progress=False)  # the failed row is not repeated
    assert len(again) == 2


def test_a_changed_setting_reruns_its_rows(tmp_path):
    base = dict(
        methods=("eap",), sparsities=(0.9,), seeds=(0,), n_train=16, n_test=16,
        out=tmp_path / "sweep.csv", device="cpu",
    )  # fmt: skip
    run_sweep(SweepConfig(**base), progress=False)
    run_sweep(SweepConfig(**base, ablation="mean"), progress=False)
    run_sweep(SweepConfig(**{**base, "n_train": 24}), progress=False)
    table = run_sweep(SweepConfig(**base), progress=False)
    assert len(table) == 3 and table["run_key"].is_unique
    assert list(table["ablation"]) == ["corrupted", "mean", "corrupted"]
    assert [json.loads(c)["ablation"] for c in table["config"]] == [
        "corrupted",
        "mean",
        "corrupted",
    ]
    assert list(table["n_train"]) == [16, 16, 24]
