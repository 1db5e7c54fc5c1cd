"""Bad input of the right type but the wrong value, and files someone else wrote: each is one line
`hap: error: ...` (exit status 2) that names the setting or file, what is wrong and the range or
fix, refused before a model boots wherever the input can be checked without one."""

from __future__ import annotations

import json
import math

import pytest
import torch

from hap.cli import main
from hap.engine.graph import Graph
from hap.errors import ConfigError, UserError
from hap.io.circuit import Circuit
from hap.io.formats import CircuitFileError, read_circuit, write_circuit
from hap.search.config import resolve
from hap.search.hybrid import HAPConfig
from hap.search.masks import SearchConfig
from hap.tasks import TaskError, check_sizes, distinct_prompts, make_task

SHAPE = Graph(4, 8, 128)  # the embedded model's graph, built without loading the model


@pytest.fixture
def no_model(monkeypatch):
    """A tripwire: a command that boots a model before refusing its bad input fails the test."""
    import hap.models.loader

    def trip(*args, **kwargs):
        raise AssertionError("the model was loaded before the bad input was refused")

    monkeypatch.setattr(hap.models.loader, "_boot", trip)


def refused(capsys, argv: list[str], message: str) -> str:
    """Run the CLI; assert exit status 2 and one line `hap: error: ...` containing `message`."""
    code = main(argv)
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2, err
    assert len(err) == 1, err
    assert err[0].startswith("hap: error: "), err
    assert message in err[0], err[0]
    return err[0]


def _circuit(graph: Graph = SHAPE) -> Circuit:
    mask = torch.zeros(graph.n_edges, dtype=torch.bool)
    mask[:20] = True
    scores = torch.linspace(-1, 1, graph.n_edges)
    return Circuit("eap", mask, 0.95, graph.sparsity(mask), scores=scores)


@pytest.fixture
def files(tmp_path):
    """A good circuit in each format, as the data the broken variants start from."""
    write_circuit(_circuit(), SHAPE, tmp_path / "native.json", "native")
    write_circuit(_circuit(), SHAPE, tmp_path / "eapig.json", "eap-ig")
    write_circuit(_circuit(), SHAPE, tmp_path / "eapig.pt", "eap-ig-pt")
    return tmp_path


def _broken(files, name: str, data) -> str:
    path = files / name
    path.write_text(data if isinstance(data, str) else json.dumps(data))
    return str(path)


# --- settings: right type, wrong value ----------------------------------------------------------

SETTINGS = {
    "negative lr": ("ep", "lr=-1", "lr=-1: must be > 0 (a float, e.g. 0.3)"),
    "nan lr": ("ep", "lr=nan", "lr=nan: must be a finite float"),
    "inf candidate multiple": ("hap", "candidate_multiple=inf", "candidate_multiple=inf: must be"),
    "small candidate multiple": ("hap", "candidate_multiple=0.5", "must be >= 1"),
    "rel_tol above one": ("hap", "rel_tol=2", "rel_tol=2: must be in [0, 1)"),
    "sparsity_tol zero": ("ep", "sparsity_tol=0", "sparsity_tol=0: must be in (0, 1]"),
    "negative init_std": ("ep", "init_std=-0.5", "init_std=-0.5: must be >= 0"),
    "zero lambda_lr": ("ep", "lambda_lr=0", "lambda_lr=0: must be > 0"),
    "negative acdc threshold": ("acdc", "threshold=-1", "threshold=-1: must be >= 0"),
    "zero eap batch": ("eap", "batch_size=0", "batch_size=0: must be >= 1 (an int, e.g. 32)"),
    "negative ig steps": ("eap-ig", "ig_steps=-2", "ig_steps=-2: must be >= 0"),
    "steps zero (kept)": ("ep", "steps=0", "search settings must be positive: steps=0"),
}


@pytest.mark.parametrize("case", sorted(SETTINGS))
def test_a_setting_out_of_range_is_one_line_before_the_model_loads(capsys, no_model, case):
    method, setting, message = SETTINGS[case]
    refused(capsys, ["discover", "--method", method, "--set", setting], message)


def test_range_errors_from_the_library_name_the_key_and_range():
    with pytest.raises(ConfigError, match=r"lr=-1: must be > 0 \(a float, e.g. 0.3\)"):
        resolve(SearchConfig, {"lr": "-1"})
    with pytest.raises(ConfigError, match="candidate_multiple=inf: must be a finite float"):
        resolve(HAPConfig, {"candidate_multiple": "inf"})
    with pytest.raises(ConfigError, match="search.lr=-inf: must be a finite float"):
        resolve(HAPConfig, {"search.lr": "-inf"})
    with pytest.raises(ConfigError, match="rel_tol=2.*init_std=-1"):  # every bad value at once
        resolve(SearchConfig, {"rel_tol": "2", "init_std": "-1"})
    with pytest.raises(ConfigError, match="candidate_multiple=nan: not finite"):
        HAPConfig(candidate_multiple=math.nan).validate()  # built directly, not through --set
    assert resolve(SearchConfig, {"rel_tol": "0", "sparsity_tol": "1"}).rel_tol == 0.0


# --- the device and the model folder ------------------------------------------------------------


@pytest.mark.parametrize(
    "device, message",
    [
        ("tpu", "--device 'tpu' is not a device: choose cpu, cuda, cuda:N (N a GPU index) or mps"),
        ("cuda:x", "--device 'cuda:x' is not a device: choose cpu, cuda, cuda:N"),
        ("meta", "--device 'meta': hap runs on cpu, cuda"),
    ],
)
def test_a_device_that_is_none_is_refused_naming_the_choices(capsys, no_model, device, message):
    refused(capsys, ["discover", "--method", "eap", "--device", device], message)


def _model_dir(tmp_path, config: str | None):
    folder = tmp_path / "model"
    folder.mkdir()
    if config is not None:
        (folder / "config.json").write_text(config)
    (folder / "model.safetensors").write_bytes(b"")
    return folder


@pytest.mark.parametrize(
    "config, message",
    [
        ("{}", "config.json has no model_type"),
        ("{not json", "config.json is not valid JSON"),
        ("[1, 2]", "config.json holds a list, not the object of a model config"),
        ('{"model_type": "no-such-arch"}', "model_type 'no-such-arch' is not one"),
        ('{"model_type": "gpt2", "architectures": "GPT2LMHeadModel"}', "architectures must be"),
    ],
)
def test_a_model_folder_that_cannot_boot_is_refused_before_transformers(
    capsys, no_model, tmp_path, config, message
):
    folder = _model_dir(tmp_path, config)
    line = refused(capsys, ["discover", "--method", "eap", "--model", str(folder)], message)
    assert str(folder) in line


def test_a_model_folder_without_weights_is_refused(capsys, no_model, tmp_path):
    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "config.json").write_text('{"model_type": "gpt2"}')
    refused(capsys, ["discover", "--method", "eap", "--model", str(folder)], "has no weights")


# --- circuit files written by someone else ------------------------------------------------------


def test_broken_circuit_files_are_one_line_before_the_model_loads(capsys, no_model, files):
    eapig = json.loads((files / "eapig.json").read_text())
    native = json.loads((files / "native.json").read_text())
    first = next(iter(eapig["edges"]))
    cases = {
        "edges list": (
            {**eapig, "edges": list(eapig["edges"])},
            "'edges' must be an object mapping edge names to {score, in_graph}, got list",
        ),
        "string score": (
            {**eapig, "edges": {**eapig["edges"], first: {"score": "0.5", "in_graph": True}}},
            f"the score of edge {first!r} must be a number or null, got '0.5' (str)",
        ),
        "string flag": (
            {**eapig, "edges": {**eapig["edges"], first: {"score": 0.5, "in_graph": "yes"}}},
            "has in_graph 'yes'",
        ),
        "absurd layers": (
            {**eapig, "cfg": {"n_layers": 10**9, "n_heads": 8}},
            "n_layers must be in [1, 1,000] and n_heads in [1, 1,000]",
        ),
        "absurd edges": (
            {**eapig, "cfg": {"n_layers": 900, "n_heads": 900}},
            "hap reads circuits of at most 100,000,000 edges",
        ),
        "fractional layers": (
            {**eapig, "cfg": {"n_layers": 4.5, "n_heads": 8}},
            "cfg.n_layers must be a whole number, got 4.5",
        ),
        "cfg list": ({**eapig, "cfg": [4, 8]}, "cfg must be an object with n_layers and n_heads"),
        "top-level list": ([eapig], "is JSON but no circuit"),
        "native edges list": (
            {**native, "edges": list(native["edges"])},
            "'edges' must be an object mapping edge names to their scores",
        ),
        "native string scores": ({**native, "scores": "abc"}, "'scores' must be a list of 1519"),
        "native bad method": ({**native, "method": 5}, "method must be a string, got 5 (int)"),
        "hap record list": ({**eapig, "hap": []}, "hap must be an object, got list"),
    }
    for name, (data, message) in cases.items():
        path = _broken(files, f"{name.replace(' ', '_')}.json", data)
        line = refused(capsys, ["evaluate", "--circuit", path], message)
        assert path in line, line


def test_broken_pt_files_are_one_line(capsys, no_model, files):
    good = torch.load(files / "eapig.pt", weights_only=True)
    cases = {
        "shape": ({**good, "edges_scores": torch.zeros(2, 2)}, "edges_scores is (2, 2)"),
        "not a tensor": ({**good, "edges_in_graph": [[True]]}, "must be a tensor (37, 101)"),
        "flags not 0 or 1": (
            {**good, "edges_in_graph": good["edges_in_graph"].float() * 3},
            "edges_in_graph must be booleans (or 0 / 1)",
        ),
        "top-level list": ([1, 2], "holds a list, not EAP-IG's graph dict"),
        "huge cfg": (
            {**good, "cfg": {"n_layers": 10**9, "n_heads": 10**9}},
            "n_layers must be in [1, 1,000]",
        ),
        "no cfg": ({k: v for k, v in good.items() if k != "cfg"}, "lacks the key 'cfg'"),
    }
    for name, (data, message) in cases.items():
        path = files / f"{name.replace(' ', '_')}.pt"
        torch.save(data, path)
        refused(capsys, ["evaluate", "--circuit", str(path)], message)


def test_good_files_still_read(files):
    for name in ("native.json", "eapig.json", "eapig.pt"):
        circuit, graph = read_circuit(files / name, SHAPE)
        assert circuit.n_edges == 20 and graph == SHAPE
    with pytest.raises(CircuitFileError, match="nested too deeply"):
        read_circuit(_broken(files, "deep.json", "[" * 100_000 + "]" * 100_000))


# --- roles CSV ----------------------------------------------------------------------------------


def test_a_roles_csv_without_its_columns_is_one_line(capsys, no_model, files):
    roles = files / "roles.csv"
    roles.write_text("name,role\na0.h1,name mover\n")
    out = files / "out.png"
    argv = ["draw", str(files / "native.json"), "--roles", str(roles), "-o", str(out)]
    line = refused(capsys, argv, "lacks the column(s) head, roles")
    assert str(roles) in line and "needs columns head and roles" in line
    assert not out.exists()
    roles.write_bytes(b"\xff\xfe\x00\x81")
    refused(capsys, argv, "cannot be read as CSV")


# --- split sizes --------------------------------------------------------------------------------


def test_more_prompts_than_a_task_has_fails_fast():
    with pytest.raises(TaskError, match="at most 100,000 in all"):
        make_task("ioi", None, n_test=100_000_000)  # before the tokenizer is touched
    assert distinct_prompts("gendered-pronoun") == 3120
    with pytest.raises(TaskError, match="has only 3,120 distinct prompts"):
        check_sizes("gendered-pronoun", 3000, 64, 200)
    with pytest.raises(TaskError, match="has only 10,864 distinct prompts"):
        check_sizes("greater-than", 64, 64, 20_000)
    check_sizes("greater-than", 64, 64, 200)
    with pytest.raises(UserError, match="n_test=-1"):
        check_sizes("ioi", 1, 1, -1)


def test_n_test_beyond_the_cap_is_one_line_on_the_cli(capsys, no_model):
    refused(
        capsys,
        ["discover", "--method", "eap", "--device", "cpu", "--n-test", "100000000"],
        "n_train + n_val + n_test = 100,000,128 prompts asked for; a task draws at most 100,000",
    )
