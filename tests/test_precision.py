"""--precision on the real embedded model: what a command runs at is what it records (its --json
output, its circuit file, every sweep row, the frontier's and MIB's summaries, the baseline),
bf16 gives figures close to fp32's but not the same, a bf16 row is another sweep result than the
fp32 row of the same point, and a results file from before the precision column still reads (as
fp32) and resumes at fp32 only."""

from __future__ import annotations

import csv
import json

import pytest
import torch

from hap.cli import main
from hap.experiments.results import LEGACY_COLUMNS, read_results
from hap.experiments.runs import precision_of
from hap.io.formats import read_circuit

SMALL = ["--n-train", "16", "--n-val", "16", "--n-test", "16", "--device", "cpu", "--quiet"]


def _json(capsys, argv: list[str]) -> dict:
    assert main(argv + ["--json"]) == 0
    return json.loads(capsys.readouterr().out)


def test_discover_at_bf16_records_it_and_lands_near_fp32(tmp_path, capsys):
    found = {}
    for precision in ("fp32", "bf16"):
        out = tmp_path / f"{precision}.json"
        argv = ["discover", "--method", "eap", "--precision", precision, "--out", str(out)]
        found[precision] = _json(capsys, argv + SMALL)
        assert found[precision]["precision"] == precision
        circuit, _ = read_circuit(out)
        assert circuit.details["precision"] == precision  # the circuit file says it too
        found[precision]["scores"] = circuit.scores
    fp32, bf16 = found["fp32"], found["bf16"]
    assert bf16["kl"] != fp32["kl"] and bf16["kl"] == pytest.approx(fp32["kl"], rel=0.02)
    assert bf16["full_logit_diff"] == pytest.approx(fp32["full_logit_diff"], rel=0.01)
    assert not torch.equal(bf16["scores"], fp32["scores"])
    cosine = torch.nn.functional.cosine_similarity(bf16["scores"], fp32["scores"], dim=0)
    assert cosine > 0.999

    argv = ["evaluate", "--circuit", str(tmp_path / "bf16.json"), "--precision", "fp32"]
    assert main(argv + SMALL + ["--json"]) == 0
    shown = capsys.readouterr()
    evaluated = json.loads(shown.out)
    assert (evaluated["precision"], evaluated["recorded_precision"]) == ("fp32", "bf16")
    assert evaluated["kl"] == pytest.approx(fp32["kl"])  # the same edges, evaluated at fp32
    assert "was searched at bf16; evaluating at fp32" in shown.err


def test_a_bench_row_carries_its_precision_under_its_own_key(tmp_path, capsys):
    out = tmp_path / "sweep.csv"
    bench = ["bench", "--methods", "eap", "--sparsities", "0.9", "--n-seeds", "1"]
    bench += ["--out", str(out), "--plots", str(tmp_path / "plots")] + SMALL
    for precision in ("bf16", "fp32"):
        _json(capsys, bench + ["--precision", precision])
    table = read_results(out)
    assert list(table["precision"]) == ["bf16", "fp32"] and table["run_key"].is_unique
    assert (table["status"] == "ok").all() and table["kl"].nunique() == 2
    circuit, _ = read_circuit(tmp_path / "circuits" / f"{table['run_key'][0]}.json")
    assert circuit.details["precision"] == "bf16"

    legacy = tmp_path / "legacy.csv"  # the fp32 row as a file from before the column
    with open(out, newline="") as source, open(legacy, "w", newline="") as target:
        rows = [r for r in csv.DictReader(source) if r["precision"] == "fp32"]
        writer = csv.DictWriter(target, LEGACY_COLUMNS, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    old = read_results(legacy)
    assert list(old["precision"]) == ["fp32"] and list(old.columns) == list(table.columns)
    text = legacy.read_text()
    _json(capsys, bench + ["--out", str(legacy)])  # fp32 keys unchanged: resumed, nothing added
    assert legacy.read_text() == text
    assert main(bench + ["--out", str(legacy), "--precision", "bf16"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "written before the precision column" in err[0]
    assert legacy.read_text() == text


def test_frontier_mib_and_baseline_record_their_precision(tmp_path, capsys):
    frontier = ["frontier", "--methods", "ep,hap", "--budgets", "1,2", "--n-seeds", "1"]
    frontier += ["--out", str(tmp_path / "frontier.json"), "--precision", "tf32"]
    assert _json(capsys, frontier + SMALL)["precision"] == "tf32"  # on a CPU: fp32, as asked
    assert json.loads((tmp_path / "frontier.json").read_text())["precision"] == "tf32"
    mib = ["mib", "--methods", "eap", "--fractions", "0.1,1", "--precision", "bf16"]
    mib += ["--out", str(tmp_path / "mib.json")]
    assert _json(capsys, mib + SMALL)["precision"] == "bf16"
    assert json.loads((tmp_path / "mib.json").read_text())["precision"] == "bf16"
    assert _json(capsys, ["baseline", "--precision", "bf16"] + SMALL)["precision"] == "bf16"


def test_the_help_says_what_tf32_is_on_a_cpu(capsys):
    assert main(["discover", "--help"]) == 0
    assert "on a CPU the same as fp32" in " ".join(capsys.readouterr().out.split())


def test_precision_of_a_model_loaded_by_hand(model):
    assert precision_of(model) == "fp32"  # conftest's: hap.models.load_model, no precision kept
