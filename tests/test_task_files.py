"""Task files: every format read into the same examples, splits, and every malformed file refused
in one line naming the file and the row, before a model loads."""

from __future__ import annotations

import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from hap.cli import main
from hap.tasks import make_task, read_task_file, task_key
from hap.tasks.base import Example, TaskError
from hap.tasks.files import choose_rows

TASK = "tests/data/tasks/handoff.jsonl"
CLEAN = "Then, Mary and John went to the park. John gave a ring to"
CORRUPT = "Then, Anna and Paul went to the park. Kate gave a ring to"


@pytest.fixture
def no_model(monkeypatch):
    import hap.models.loader

    def trip(*args, **kwargs):
        raise AssertionError("the model was loaded before the bad input was refused")

    monkeypatch.setattr(hap.models.loader, "_boot", trip)


def write(tmp_path, name: str, content) -> str:
    path = tmp_path / name
    if isinstance(content, bytes):
        path.write_bytes(content)
    elif isinstance(content, str):
        path.write_text(content)
    else:
        path.write_text("\n".join(json.dumps(r) for r in content) + "\n")
    return str(path)


def native_rows(n: int = 10, split: bool = False) -> list[dict]:
    names = ["Mary", "John", "Lisa", "Tom", "Anna", "Paul", "Kate", "Mark", "Emma", "Peter"]
    rows = []
    for i in range(n):
        io, s = names[i % 10], names[(i + 3) % 10]
        row = {
            "clean": f"Then, {io} and {s} went to the park. {s} gave a ring to",
            "corrupted": "Then, Julia and David went to the park. Sarah gave a ring to",
            "answers": [" " + io],
            "distractors": " " + s,
        }
        if split:
            row["split"] = ("train", "validation", "test")[i % 3]
        rows.append(row)
    return rows


EXPECTED = Example(CLEAN, CORRUPT, (" Mary",), (" John",))


def test_every_format_reads_to_the_same_example(tmp_path):
    """One prompt pair written in each format's documented schema reads to one Example."""
    files = {
        "native.jsonl": [
            {"clean": CLEAN, "corrupted": CORRUPT, "answers": [" Mary"], "distractors": [" John"]}
        ],
        "native.json": json.dumps(
            [{"clean": CLEAN, "corrupted": CORRUPT, "answer": " Mary", "distractor": " John"}]
        ),
        "native.csv": f'clean,corrupted,answer,distractor\n"{CLEAN}","{CORRUPT}", Mary, John\n',
        "eapig.csv": f'clean,corrupted,label,distractor\n"{CLEAN}","{CORRUPT}", Mary, John\n',
        "autocircuit.json": json.dumps(
            {
                "seq_labels": ["x"],
                "prompts": [
                    {
                        "clean": CLEAN,
                        "corrupt": CORRUPT,
                        "answers": [" Mary"],
                        "wrong_answers": [" John"],
                    }
                ],
            }
        ),
        "ep.jsonl": [
            {
                "clean": CLEAN + "<predict> Mary</predict>",
                "corrupted": CORRUPT + "<predict> John</predict>",
            }
        ],
        "mib_ioi.jsonl": [
            {
                "prompt": CLEAN,
                "metadata": {"indirect_object": "Mary", "subject": "John", "random_c": "Kate"},
                "s2_io_flip_counterfactual": {"prompt": CORRUPT, "choices": ["John", "Mary"]},
                "abc_counterfactual": {"prompt": CLEAN.replace("Mary", "Lisa"), "choices": []},
            }
        ],
    }
    formats = {}
    for name, content in files.items():
        task_file = read_task_file(write(tmp_path, name, content))
        assert [r.example for r in task_file.rows] == [EXPECTED], name
        formats[name] = task_file.format
    assert formats == {
        "native.jsonl": "native",
        "native.json": "native",
        "native.csv": "native",
        "eapig.csv": "eap-ig",
        "autocircuit.json": "auto-circuit",
        "ep.jsonl": "edge-pruning",
        "mib_ioi.jsonl": "mib-ioi",
    }
    abc = read_task_file(tmp_path / "mib_ioi.jsonl", counterfactual="abc_counterfactual")
    assert abc.rows[0].example.corrupted == CLEAN.replace("Mary", "Lisa")
    assert abc.counterfactual == "abc_counterfactual"


def test_mib_mcqa_and_arithmetic_rows_from_parquet_and_save_to_disk(tmp_path):
    mcqa = {
        "prompt": "Q: the color of a rose? A. red B. blue Answer:",
        "choices": {"label": ["A", "B"], "text": ["red", "blue"]},
        "answerKey": 0,
        "symbol_counterfactual": {
            "prompt": "Q: the color of a rose? A. blue B. red Answer:",
            "choices": {"label": ["A", "B"], "text": ["blue", "red"]},
            "answerKey": 1,
        },
    }
    pq.write_table(pa.Table.from_pylist([mcqa]), tmp_path / "mcqa.parquet")
    task_file = read_task_file(tmp_path / "mcqa.parquet")
    assert task_file.format == "mib-mcqa"
    assert task_file.rows[0].example.answers == ("A",)
    assert task_file.rows[0].example.distractors == ("B",)
    arithmetic = [
        {
            "prompt": "Q: 3+4=",
            "label": 7,
            "operator": "+",
            "random_counterfactual": {"prompt": "Q: 2+4=", "label": 6},
        },
        {"prompt": "Q: 5+4=", "label": 9, "operator": "+", "random_counterfactual": None},
        {
            "prompt": "Q: 1+1=",
            "label": 2,
            "operator": "+",
            "random_counterfactual": {"prompt": "Q: 1+1=", "label": 2},
        },
    ]
    folder = tmp_path / "arith"
    (folder / "test").mkdir(parents=True)
    table = pa.Table.from_pylist(arithmetic)
    with pa.OSFile(str(folder / "test" / "data-00000-of-00001.arrow"), "wb") as sink:
        with pa.ipc.new_stream(sink, table.schema) as writer:
            writer.write_table(table)
    task_file = read_task_file(folder)
    assert task_file.format == "mib-arithmetic"
    assert [r.example.answers for r in task_file.rows] == [("7",)]
    assert task_file.rows[0].split == "test"  # the DatasetDict's folder names the split
    assert {k: len(v) for k, v in task_file.dropped.items()} == {
        "no random_counterfactual": 1,
        "the counterfactual's label equals the clean label": 1,
    }


def test_splits_by_column_or_by_seed(tmp_path):
    with_column = read_task_file(write(tmp_path, "s.jsonl", native_rows(30, split=True)))
    train, val, test = choose_rows(with_column, None, None, None, seed=0)
    assert (len(train), len(val), len(test)) == (10, 10, 10)
    assert {r.split for r in train} == {"train"} and {r.split for r in test} == {"test"}
    train, _, _ = choose_rows(with_column, 4, None, None, seed=0)
    assert len(train) == 4
    with pytest.raises(TaskError, match="has 10 train rows and 11 were asked for"):
        choose_rows(with_column, 11, None, None, seed=0)

    plain = read_task_file(write(tmp_path, "p.jsonl", native_rows(50)))
    a = choose_rows(plain, None, None, None, seed=1)
    b = choose_rows(plain, None, None, None, seed=1)
    c = choose_rows(plain, None, None, None, seed=2)
    assert [len(p) for p in a] == [20, 10, 20]  # 40% / 20% / 40%
    assert [r.line for p in a for r in p] == [r.line for p in b for r in p]
    assert [r.line for p in a for r in p] != [r.line for p in c for r in p]
    assert len({r.line for p in a for r in p}) == 50  # disjoint
    with pytest.raises(TaskError, match="has 50 usable rows and .* asks for 60"):
        choose_rows(plain, 30, 10, 20, seed=0)


def test_a_file_task_builds_and_records_its_source(tmp_path, model):
    path = write(tmp_path, "t.jsonl", native_rows(30))
    task = make_task(path, model.tokenizer, n_train=10, n_val=5, n_test=10, seed=0)
    record = task.record()
    assert (record["n_train"], record["n_val"], record["n_test"]) == (10, 5, 10)
    assert record["task_format"] == "native" and len(record["task_sha256"]) == 64
    assert int(task.test.answers.max()) < len(model.tokenizer)
    key = task_key(path)
    with open(path, "a") as handle:  # an edited file is another task: another resume key
        handle.write(json.dumps(native_rows(1)[0] | {"clean": CLEAN}) + "\n")
    assert task_key(path) != key


def test_token_level_problems_name_the_row(tmp_path, model):
    rows = native_rows(6)
    rows[3]["answers"] = [" Maryland"]  # not a token of the embedded model
    path = write(tmp_path, "multi.jsonl", rows)
    with pytest.raises(TaskError, match="not single known tokens .*first in .*multi.jsonl line 4"):
        make_task(path, model.tokenizer, n_train=2, n_val=0, n_test=4)
    rows = native_rows(6)
    rows[2]["corrupted"] = "Then, Julia and David went to the park. Sarah gave the ring to Kate to"
    path = write(tmp_path, "unequal.jsonl", rows)
    with pytest.raises(TaskError, match="1 of 6 pairs .* first line 3"):
        make_task(path, model.tokenizer, n_train=2, n_val=0, n_test=4)
    rows = native_rows(6)
    rows[1]["clean"] = "Then, Mary and John went to the zoo. John gave a ring to"
    path = write(tmp_path, "unknown.jsonl", rows)
    with pytest.raises(TaskError, match="words unknown to this tokenizer: \\['zoo'\\]"):
        make_task(path, model.tokenizer, n_train=2, n_val=0, n_test=4)


def test_token_ids_are_checked_against_the_tokenizer(tmp_path, model):
    csv = "clean,corrupted,correct_idx,incorrect_idx\n" + f'"{CLEAN}","{CORRUPT}",120,5000\n' * 4
    path = write(tmp_path, "ids.csv", csv)
    task_file = read_task_file(path)
    assert task_file.format == "eap-ig" and task_file.token_ids
    with pytest.raises(TaskError, match=f"token ids below {len(model.tokenizer)}"):
        make_task(path, model.tokenizer, n_train=1, n_val=0, n_test=3)


def _bad_files(tmp_path) -> dict[str, tuple[str, str]]:
    good = native_rows(10)
    missing_column = [dict(r) for r in good]
    del missing_column[4]["corrupted"]
    bad_split = native_rows(10, split=True)
    bad_split[7]["split"] = "dev"
    return {
        "missing": (str(tmp_path / "none.jsonl"), "does not exist"),
        "empty": (write(tmp_path, "empty.jsonl", ""), "is empty"),
        "binary": (write(tmp_path, "bin.jsonl", b"\x00\x01\x02garbage"), "is binary"),
        "broken line": (
            write(tmp_path, "broken.jsonl", json.dumps(good[0]) + "\n{not json\n"),
            "line 2 is not JSON",
        ),
        "unknown columns": (
            write(tmp_path, "cols.jsonl", [{"text": "a", "target": "b"}]),
            "match no known format",
        ),
        "missing column": (write(tmp_path, "mc.jsonl", missing_column), "line 5 (native)"),
        "split values": (write(tmp_path, "split.jsonl", bad_split), "line 8 has split='dev'"),
        "no distractor": (
            write(tmp_path, "nod.jsonl", [{"clean": "a", "corrupted": "b", "answers": " c"}]),
            "no distractors",
        ),
        "ep without span": (
            write(tmp_path, "ep.jsonl", [{"clean": "a <predict> b", "corrupted": "c"}]),
            "line 1 (edge-pruning)",
        ),
        "too few rows": (write(tmp_path, "few.jsonl", native_rows(3)), "has 3 usable rows"),
        "a JSON number": (
            write(tmp_path, "num.json", "42"),
            "not JSON, JSON lines or a CSV with a header",
        ),
    }


def test_bad_task_files_are_one_line_before_the_model_loads(tmp_path, capsys, no_model):
    for label, (path, message) in _bad_files(tmp_path).items():
        code = main(["discover", "--method", "eap", "--task", path, "--n-test", "50"])
        err = capsys.readouterr().err.strip().splitlines()
        assert code == 2, (label, err)
        assert len(err) == 1 and err[0].startswith("hap: error: "), (label, err)
        assert message in err[0], (label, err[0])


def test_format_and_counterfactual_flags_are_checked(tmp_path, capsys, no_model):
    path = write(tmp_path, "t.jsonl", native_rows(10))
    assert main(["baseline", "--task", path, "--counterfactual", "abc_counterfactual"]) == 2
    assert "applies to MIB's formats only" in capsys.readouterr().err
    assert main(["baseline", "--task", "ioi", "--task-format", "native"]) == 2
    assert "apply to task files" in capsys.readouterr().err
    assert main(["baseline", "--task", path, "--task-format", "nope"]) == 2
    assert "invalid choice" in capsys.readouterr().err
    assert main(["baseline", "--task", "iio"]) == 2
    assert "neither a built-in task" in capsys.readouterr().err


def test_task_check_reports_the_model_on_clean_and_corrupted(tmp_path, capsys):
    path = TASK
    assert main(["task", "check", path, "--json", "--device", "cpu"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["rows_usable"] == 120 and report["task_format"] == "native"
    assert report["splits"] == {"n_train": 48, "n_val": 24, "n_test": 48}
    assert report["token_problems"] == {}
    assert report["prompt_tokens"]["min"] < report["prompt_tokens"]["max"]  # mixed lengths
    assert report["clean_accuracy"] > 0.6 > report["corrupted_accuracy"]
    assert report["clean_logit_diff"] > 2 + report["corrupted_logit_diff"]
    assert report["flags"] == []
    rows = native_rows(10)
    for row in rows:  # the corrupted prompt keeps the clean answer: nothing for patching to move
        row["corrupted"] = row["clean"]
    same = write(tmp_path, "same.jsonl", rows)
    assert main(["task", "check", same, "--json", "--device", "cpu"]) == 0
    flags = json.loads(capsys.readouterr().out)["flags"]
    assert any("clean and corrupted agree" in f for f in flags), flags


def test_discover_and_per_prompt_evaluation_on_a_task_file(tmp_path, capsys):
    """A circuit found on a task file and evaluated prompt by prompt: the per-prompt CSV's means
    are the summary's, and the JSON names the file's hash and split sizes."""
    import csv

    circuit = tmp_path / "c.json"
    argv = ["--task", TASK, "--device", "cpu", "--n-train", "24", "--n-val", "0", "--n-test", "30"]
    assert (
        main(
            [
                "discover",
                "--method",
                "eap",
                "--sparsity",
                "0.9",
                "--out",
                str(circuit),
                "--json",
                *argv,
            ]
        )
        == 0
    )
    found = json.loads(capsys.readouterr().out)
    assert found["task_format"] == "native" and found["n_test"] == 30
    assert found["task_sha256"] == read_task_file(TASK).sha256
    per_prompt = tmp_path / "prompts.csv"
    code = main(
        ["evaluate", "--circuit", str(circuit), "--per-prompt", str(per_prompt), "--json", *argv]
    )
    assert code == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["kl"] == pytest.approx(found["kl"], rel=1e-5)
    with open(per_prompt) as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 30
    assert rows[0]["prompt"].endswith(" to") and rows[0]["answers"].startswith(" ")
    mean = sum(float(r["circuit_logit_diff"]) for r in rows) / len(rows)
    assert mean == pytest.approx(summary["logit_diff"], rel=1e-5)
    accuracy = sum(r["circuit_correct"] == "True" for r in rows) / len(rows)
    assert accuracy == pytest.approx(summary["accuracy"])
    low, high = summary["faithfulness_ci"]
    assert low <= summary["faithfulness"] <= high


def test_a_sweep_on_a_task_file_keys_its_content(tmp_path, capsys):
    path = tmp_path / "t.jsonl"
    path.write_text(open(TASK).read())
    out = tmp_path / "sweep.csv"
    argv = [
        "bench",
        "--methods",
        "eap",
        "--tasks",
        str(path),
        "--sparsities",
        "0.9",
        "--n-seeds",
        "1",
        "--out",
        str(out),
        "--plots",
        str(tmp_path / "plots"),
        "--device",
        "cpu",
        "--quiet",
        "--json",
    ]
    assert main(argv) == 0
    capsys.readouterr()
    import pandas as pd

    table = pd.read_csv(out)
    assert len(table) == 1 and table["task"][0].startswith(f"{path}@")
    assert (table["n_train"][0], table["n_val"][0], table["n_test"][0]) == (48, 24, 48)
    assert main(argv) == 0  # resumed: nothing new
    assert len(pd.read_csv(out)) == 1
    with open(path, "a") as handle:
        handle.write(open(TASK).readline())  # an edited file is new data: a new run
    assert main(argv) == 0
    assert len(pd.read_csv(out)) == 2


def test_mib_rows_are_filtered_for_the_tokenizer_as_mib_does(tmp_path, model):
    """MIB's loader keeps the rows whose names tokenise alike; here a MIB row whose answer is not
    a single token (or whose counterfactual differs in length) is dropped and counted, while the
    same row in a researcher's own file is refused by name."""
    rows = [json.loads(line) for line in open("tests/data/tasks/handoff_mib_ioi.jsonl")][:20]
    rows[4]["metadata"]["indirect_object"] = "Maryland"  # not a token of the embedded model
    path = write(tmp_path, "mib.jsonl", rows)
    task = make_task(path, model.tokenizer, n_train=4, n_val=0, n_test=15)
    assert len(task.test) == 15
    from hap.tasks.files import usable_rows

    kept = usable_rows(read_task_file(path), model.tokenizer)
    assert len(kept.rows) == 19
    assert kept.dropped == {
        "an answer or distractor that is not a single token (for this tokenizer)": [5]
    }
    with pytest.raises(TaskError, match="has 19 usable rows"):
        make_task(path, model.tokenizer, n_train=5, n_val=0, n_test=15)


def test_what_a_newcomer_gets_wrong_is_named(tmp_path, model, capsys, no_model):
    """An unquoted comma in a CSV, a JSON list with a trailing comma, an answer that is also the
    distractor: one line each, naming the line, before any model loads."""
    csv_text = "clean,corrupted,answer,distractor\n" + "\n".join(
        f'"{r["clean"]}","{r["corrupted"]}",{r["answers"][0]},{r["distractors"]}'
        for r in native_rows(6)
    )
    csv_text += "\nThen, Mary, and John,Then, Anna and Paul, Mary, John\n"
    cases = {
        "commas.csv": (csv_text, "line 8 has 7 fields and the header 4"),
        "trailing.json": (json.dumps(native_rows(3))[:-1] + ",]", "is not valid JSON"),
        "same.jsonl": (
            [{"clean": CLEAN, "corrupted": CORRUPT, "answers": " Mary", "distractors": " Mary"}],
            "line 1 (native): an answer is also a distractor",
        ),
    }
    for name, (content, message) in cases.items():
        path = write(tmp_path, name, content)
        assert main(["discover", "--method", "eap", "--task", path]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and message in err[0], (name, err)


def test_prompts_longer_than_the_context_are_refused(tmp_path, capsys):
    rows = native_rows(10)
    rows[3]["clean"] = "Then, " + "Mary and John went to the park. " * 9 + "John gave a ring to"
    rows[3]["corrupted"] = rows[3]["clean"].replace("Mary", "Anna")
    path = write(tmp_path, "long.jsonl", rows)
    assert main(["discover", "--method", "eap", "--task", path, "--device", "cpu"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "but the model reads at most 64" in err[0], err
    assert main(["task", "check", path, "--json", "--device", "cpu"]) == 0
    flags = json.loads(capsys.readouterr().out)["flags"]
    assert any("the model reads at most 64" in f for f in flags), flags


def test_a_sweep_refuses_a_bad_file_before_any_run(tmp_path, capsys):
    rows = native_rows(10)
    rows[6]["answers"] = [" Maryland"]
    path = write(tmp_path, "multi.jsonl", rows)
    out = tmp_path / "sweep.csv"
    argv = [
        "bench",
        "--methods",
        "eap",
        "--tasks",
        f"ioi,{path}",
        "--sparsities",
        "0.9",
        "--n-seeds",
        "1",
        "--out",
        str(out),
        "--plots",
        str(tmp_path / "p"),
        "--device",
        "cpu",
        "--quiet",
        "--n-test",
        "4",
        "--n-train",
        "4",
        "--n-val",
        "2",
    ]
    assert main(argv) == 2
    assert "line 7" in capsys.readouterr().err
    assert not out.exists()  # not even the built-in task's run


def test_evaluate_notes_a_circuit_found_on_other_data(tmp_path, capsys):
    circuit = tmp_path / "c.json"
    base = ["--task", TASK, "--device", "cpu", "--n-val", "0"]
    assert main(["discover", "--method", "eap", "--out", str(circuit), *base]) == 0
    capsys.readouterr()
    assert main(["evaluate", "--circuit", str(circuit), *base, "--json"]) == 0
    assert "note" not in capsys.readouterr().err
    assert main(["evaluate", "--circuit", str(circuit), *base, "--seed", "1", "--json"]) == 0
    assert "may include prompts the search trained on" in capsys.readouterr().err
    assert main(["evaluate", "--circuit", str(circuit), "--task", "ioi", "--device", "cpu"]) == 0
    assert "evaluating on ioi" in capsys.readouterr().err


def test_review_findings_stay_fixed(tmp_path, monkeypatch, capsys, no_model):
    """A folder named like a built-in task does not hijack it; a file with no test rows and
    task-file flags without a task file are refused before the model loads."""
    from hap.experiments.runs import Split, TaskSpec

    monkeypatch.chdir(tmp_path)
    (tmp_path / "ioi").mkdir()
    assert TaskSpec("ioi").sizes(Split()) == {"n_train": 64, "n_val": 64, "n_test": 200}
    assert TaskSpec("ioi").key() == "ioi"
    rows = native_rows(10, split=True)
    for row in rows:
        row["split"] = "train" if row["split"] == "test" else row["split"]
    path = write(tmp_path, "notest.jsonl", rows)
    assert main(["discover", "--method", "eap", "--task", path]) == 2
    assert "no test rows; add rows with split=test" in capsys.readouterr().err
    argv = ["bench", "--methods", "eap", "--tasks", "ioi", "--counterfactual", "abc_counterfactual"]
    assert main(argv) == 2
    assert "apply to task files; --tasks names none" in capsys.readouterr().err
