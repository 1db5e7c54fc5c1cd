"""Bad input on the command line: one line, exit status 2, before any model loads; --debug shows
the traceback; an unexpected exception keeps its own."""

from __future__ import annotations

import sys

import pytest

import hap.models
from hap.cli import main
from hap.errors import UserError


@pytest.fixture
def no_model(monkeypatch):
    """A tripwire: any command that reaches model loading fails the test."""

    def trip(*args, **kwargs):
        raise AssertionError("the model was loaded before the bad input was refused")

    monkeypatch.setattr(hap.models, "load_model", trip)


def _bad_inputs(tmp_path) -> dict[str, tuple[list[str], str]]:
    a_file = tmp_path / "file.txt"
    a_file.write_text("x")
    results = tmp_path / "old.csv"
    results.write_text("a,b\n1,2\n")
    return {
        "n-test zero": (
            ["discover", "--method", "eap", "--n-test", "0"],
            "--n-test: must be 1 or more",
        ),
        "n-train text": (
            ["discover", "--method", "eap", "--n-train", "ten"],
            "'ten' is not a whole",
        ),
        "negative seed": (
            ["discover", "--method", "eap", "--seed", "-1"],
            "--seed: must be 0 or more",
        ),
        "threads zero": (["bench", "--threads", "0"], "--threads: must be 1 or more"),
        "seeds zero": (["bench", "--seeds", "0"], "--seeds: must be 1 or more"),
        "sparsity one": (["discover", "--method", "eap", "--sparsity", "1"], "must be in [0, 1)"),
        "sparsity list": (["bench", "--sparsities", "0.9,1.2"], "item '1.2'"),
        "empty item": (["bench", "--sparsities", "0.9,,0.94"], "empty item"),
        "one budget": (["frontier", "--budgets", "10"], "two or more step budgets"),
        "zero budget": (["frontier", "--budgets", "0,10"], "item '0'"),
        "fraction zero": (["mib", "--fractions", "0,0.5"], "a fraction must be in (0, 1]"),
        "out under a file": (
            ["discover", "--method", "eap", "--out", str(a_file / "c.json")],
            "is a file",
        ),
        "out is a folder": (
            ["discover", "--method", "eap", "--out", str(tmp_path)],
            "is a directory",
        ),
        "plots is a file": (["bench", "--plots", str(a_file)], "is a file; give a folder"),
        "missing circuit": (
            ["evaluate", "--circuit", str(tmp_path / "none.json")],
            "does not exist",
        ),
        "unknown method": (["discover", "--method", "nope"], "unknown method 'nope'"),
        "unknown sweep method": (["bench", "--methods", "eap,nope"], "unknown method 'nope'"),
        "bad setting": (["discover", "--method", "ep", "--set", "steps=0"], "steps=0"),
        "bad setting type": (["discover", "--method", "ep", "--set", "lr=fast"], "lr='fast'"),
        "unknown setting": (
            ["bench", "--methods", "eap", "--set", "lr=0.1"],
            "no method among eap",
        ),
        "set without =": (
            ["discover", "--method", "ep", "--set", "steps"],
            "--set takes key=value",
        ),
        "bad ablation": (["discover", "--method", "eap", "--ablation", "half"], "invalid choice"),
        "bad precision": (
            ["discover", "--method", "eap", "--precision", "fp16"],
            "argument --precision: invalid choice: 'fp16'",
        ),
        "sweep precision": (["bench", "--precision", "double"], "invalid choice: 'double'"),
        "set ablation": (
            ["discover", "--method", "eap", "--set", "ablation=half"],
            "ablation='half'",
        ),
        "acdc on mib": (["mib", "--methods", "eap,acdc"], "acdc's threshold"),
        "frontier without hap": (["frontier", "--methods", "ep,eap"], "must include both"),
        "unknown task": (
            ["discover", "--method", "eap", "--task", "nope"],
            "neither a built-in task",
        ),
        "ray flag, local run": (["bench", "--cpus-per-run", "2"], "applies to --executor ray only"),
        "no validation": (
            ["bench", "--methods", "eap,ep", "--n-val", "0"],
            "no validation prompts",
        ),
        "huge split": (
            ["discover", "--method", "eap", "--n-test", "100000000"],
            "a task draws at most 100,000",
        ),
        "split beyond the task": (
            ["bench", "--methods", "eap", "--tasks", "gendered-pronoun", "--n-test", "4000"],
            "has only 3,120 distinct prompts",
        ),
        "device tpu": (
            ["discover", "--method", "eap", "--device", "tpu"],
            "is not a device: choose cpu",
        ),
        "sweep device tpu": (
            ["bench", "--methods", "eap", "--device", "tpu"],
            "is not a device: choose cpu",
        ),
        "old results": (
            ["bench", "--methods", "eap", "--out", str(results)],
            "not a sweep results",
        ),
    }


def test_bad_input_is_one_line_before_any_compute(tmp_path, capsys, no_model):
    for label, (argv, message) in _bad_inputs(tmp_path).items():
        assert main(argv) == 2, label
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("hap: error: "), (label, err)
        assert message in err[0], (label, err[0])


def test_parse_errors_return_status_2_and_help_0(capsys):
    assert main(["discover", "--method", "eap", "--n-test", "0"]) == 2
    assert main(["mib", "--help"]) == 0
    assert "--fractions" in capsys.readouterr().out


def test_debug_shows_the_traceback(monkeypatch, no_model):
    with pytest.raises(UserError, match="unknown method"):
        main(["discover", "--method", "nope", "--debug"])
    monkeypatch.setenv("HAP_DEBUG", "1")
    with pytest.raises(UserError):
        main(["discover", "--method", "nope"])


def test_an_unexpected_exception_is_not_reworded(monkeypatch):
    def shape_bug(*args, **kwargs):
        raise RuntimeError("mat1 and mat2 shapes cannot be multiplied")

    monkeypatch.setattr(hap.models, "load_model", shape_bug)
    with pytest.raises(RuntimeError, match="shapes cannot be multiplied"):
        main(["discover", "--method", "eap", "--device", "cpu"])


def test_ray_without_the_extra_names_the_install(monkeypatch, capsys, no_model):
    monkeypatch.setitem(sys.modules, "ray", None)  # as if Ray were not installed
    assert main(["bench", "--executor", "ray", "--methods", "eap"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and 'pip install "hap-bench[cluster]"' in err[0]
