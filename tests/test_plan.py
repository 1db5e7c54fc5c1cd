"""`hap plan`: the estimate against a measured peak on the embedded model, the parts it reads off
the config against the loaded bridge, and the command's refusals and JSON."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from plan_check import checkpoint, compare

from hap.cli import main
from hap.cli.plan import memory_size
from hap.experiments import plan
from hap.experiments.registry import get_backend
from hap.experiments.runs import Split, build_task

# The estimate against the measured peak (benchmarks/plan_check.py, a fresh process, peak
# resident set): the whole process within 10%, the run's own part above the loaded model within
# 30% (on the embedded model it is a few tens of MB, so a few MB of allocator slack count).
TOTAL_TOLERANCE = 0.10
RUN_TOLERANCE = 0.30


@pytest.fixture(scope="module")
def planned() -> plan.PlannedModel:
    return plan.read_model(None)


def test_estimate_matches_measured_peak():
    row = compare(checkpoint("default"), "ep", 16, "cpu", threads=1)
    assert abs(row["error_total"]) <= TOTAL_TOLERANCE, row
    assert abs(row["error_run"]) <= RUN_TOLERANCE, row


def test_shape_from_config_matches_the_loaded_bridge(planned, model, graph):
    shape = planned.shape
    unique = {p.untyped_storage().data_ptr(): p.numel() for p in model.parameters()}
    assert shape.n_params == sum(unique.values())
    assert (shape.n_layers, shape.n_heads, shape.d_model) == (
        graph.n_layers,
        graph.n_heads,
        graph.d_model,
    )
    assert shape.d_vocab == model.cfg.d_vocab and shape.d_mlp == model.cfg.d_mlp
    assert shape.graph.n_edges == graph.n_edges


def test_widths_are_the_runs_prompts(planned, model):
    split = Split(n_train=40, n_val=8, n_test=24)
    mine = plan.task_widths(planned, "ioi", 3, split)
    theirs = plan.Widths.of(build_task(model, "ioi", 3, split))
    assert mine == theirs
    # each batch cut to its longest prompt, as TaskData.batches cuts it
    task = build_task(model, "ioi", 3, split)
    cut = plan.batches(mine.train, 16)
    assert cut == [(len(b), int(b.clean.shape[1])) for b in task.train.batches(16)]


def _estimate(planned, method: str, batch_size: int, **kwargs) -> plan.Estimate:
    widths = plan.task_widths(planned, "ioi", 0, Split())
    config = plan.with_batch_size(get_backend(method).config(), batch_size)
    return plan.estimate(planned.shape, widths, method, config, **kwargs)


def test_warm_starts_plan_as_their_cold_search_after_an_attribution_pass(planned):
    """ep-warm searches every edge after scoring them, hap-warm HAP's candidates: the same
    search phase as EP's and HAP's, and HAP's attribution phase in front."""

    def phases(method: str) -> dict[str, dict[str, int]]:
        estimate = _estimate(planned, method, 16, sparsity=0.98)
        return {ph.name: {p.name: p.bytes for p in ph.parts} for ph in estimate.phases}

    ep, hap, ep_warm, hap_warm = (phases(m) for m in ("ep", "hap", "ep-warm", "hap-warm"))
    assert "attribution" not in ep and ep_warm["attribution"] == hap["attribution"]
    assert ep_warm["search"] == ep["search"] and hap_warm == hap
    assert ep_warm["search"] != hap["search"]  # every edge searched, not the candidates


def test_parts_follow_the_engine_formulas(planned):
    ep = _estimate(planned, "ep", 16)
    hap = _estimate(planned, "hap", 16, sparsity=0.99)
    search = {p.name: p.bytes for p in next(ph for ph in ep.phases if ph.name == "search").parts}
    hap_search = next(ph for ph in hap.phases if ph.name == "search")
    hap_parts = {p.name: p.bytes for p in hap_search.parts}
    # EP's engine: deltas and gradients, 2 x S x T x d floats, plus the first batch's two held
    # in the spare list where a batch of another size steps
    graph = planned.shape.graph
    widths = plan.task_widths(planned, "ioi", 0, Split())
    cut = plan.batches(widths.train, 16)
    assert len(set(cut)) > 1
    per_position = graph.n_senders * graph.d_model * 4
    assert search["engine buffers"] == plan.engine_positions(cut) * per_position
    assert plan.engine_positions([(16, 20)]) == 2 * 320
    assert plan.engine_positions([(16, 20), (16, 21), (16, 20)]) == 2 * 336 + 2 * 320
    # HAP at 99%: 4 x 15 candidate edges may touch every one of the 37 senders: no saving on
    # this graph, and the partly active heads' sources on top
    assert hap_parts["engine buffers"] == search["engine buffers"]
    assert hap_parts["partly active heads"] > 0
    assert [ph.name for ph in hap.phases] == ["load", "attribution", "search", "evaluation"]
    eap = _estimate(planned, "eap", 16)
    assert [ph.name for ph in eap.phases] == [
        "load",
        "attribution",
        "evaluation start",
        "evaluation",
    ]
    bf16 = _estimate(planned, "ep", 16, precision="bf16", device="cuda")
    assert [p.name for p in bf16.resident] == ["parameters"]  # CUDA: tensors only

    def tensors(estimate: plan.Estimate) -> int:
        return sum(p.bytes for p in estimate.peak_phase.parts if p.name != "working memory")

    assert tensors(bf16) == pytest.approx(tensors(ep) / 2, rel=0.01)


def test_fits_and_largest_batch(planned):
    estimate = _estimate(planned, "ep", 16)
    assert plan.fits(estimate, int(estimate.peak_bytes * 1.1) + 1, margin=0.1)
    assert not plan.fits(estimate, int(estimate.peak_bytes * 1.1) - 1, margin=0.1)
    widths = plan.task_widths(planned, "ioi", 0, Split())
    config = get_backend("ep").config()
    limit = int(estimate.peak_bytes * 1.1) + 1
    largest = plan.largest_batch(planned.shape, widths, "ep", config, limit, 0.1)
    assert largest is not None and largest >= 16
    if largest < len(widths.train):
        bigger = plan.with_batch_size(config, largest + 1)
        assert not plan.fits(plan.estimate(planned.shape, widths, "ep", bigger), limit, 0.1)
    assert plan.largest_batch(planned.shape, widths, "ep", config, 2**20, 0.1) is None


def test_memory_size():
    assert memory_size("40GB") == 40 * 2**30
    assert memory_size("512MiB") == 512 * 2**20
    assert memory_size("1.5g") == int(1.5 * 2**30)
    assert memory_size("100B") == 100


REFUSALS = {
    "unit": (["--memory-limit", "40XB"], "'40XB' is not a memory size"),
    "negative": (["--memory-limit=-1GB"], "must be positive"),
    "negative, argparse's reading": (["--memory-limit", "-1GB"], "expected one argument"),
    "zero": (["--memory-limit", "0GB"], "must be positive"),
    "no unit": (["--memory-limit", "40"], "is not a memory size"),
    "method": (["--methods", "ep,acdc"], "unknown method 'acdc'"),
    "device": (["--device", "tpu"], "estimate for cpu, cuda or cuda:N"),
    "model path": (["--model", "./no-such-model"], "does not exist"),
    "model name": (["--model", "nobody/no-such-model"], "not in the local Hugging Face cache"),
    "setting": (["--set", "lr=fast"], "lr='fast'"),
    "batch": (["--batch-size", "0"], "must be 1 or more"),
}


@pytest.mark.parametrize("case", sorted(REFUSALS))
def test_refusals_are_one_line(case, capsys):
    argv, message = REFUSALS[case]
    assert main(["plan", *argv]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("hap: error:") and "\n" not in err, err
    assert message in err


def test_refusals_load_no_model():
    """Every refusal above, in a fresh process: none imports the bridge (no model loads)."""
    script = (
        "import sys, contextlib, io\n"
        "from hap.cli import main\n"
        f"for argv in {[v[0] for v in REFUSALS.values()]!r}:\n"
        "    with contextlib.redirect_stderr(io.StringIO()):\n"
        "        assert main(['plan', *argv]) == 2, argv\n"
        "print('transformer_lens.model_bridge' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_json_shape(capsys):
    argv = ["plan", "--json", "--methods", "ep,hap", "--device", "cpu", "--memory-limit", "1GB"]
    assert main([*argv, "--batch-size", "8", "--n-train", "16"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert set(result) >= {"model", "task", "device", "precision", "memory_limit_mb", "methods"}
    assert result["model"]["n_edges"] == 1519
    assert result["memory_limit_mb"] == 1024
    assert list(result["methods"]) == ["ep", "hap"]
    for row in result["methods"].values():
        assert row["batch_size"] == 8
        assert row["peak_phase"] in {ph["name"] for ph in row["phases"]}
        assert [p["name"] for p in row["resident"]] == [
            "process",
            "checkpoint mapping",
            "parameters",
        ]
        total = sum(p["mb"] for p in row["resident"])
        peak = max(ph["mb"] for ph in row["phases"])
        assert row["peak_mb"] == pytest.approx(total + peak, abs=0.3)
        assert row["fits"] is True and row["largest_batch"] == 16  # the train split's size


def test_time_one_step(capsys):
    argv = ["plan", "--json", "--methods", "hap", "--device", "cpu", "--time"]
    assert main([*argv, "--batch-size", "4", "--n-train", "4", "--no-eval"]) == 0
    row = json.loads(capsys.readouterr().out)["methods"]["hap"]
    assert row["time"]["attribution_s"] > 0 and row["time"]["step_s"] > 0
    assert [ph["name"] for ph in row["phases"]] == ["load", "attribution", "search"]


def test_text_output(capsys):
    assert main(["plan", "--methods", "eap", "--device", "cpu", "--memory-limit", "40GB"]) == 0
    out = capsys.readouterr().out
    assert "largest batch" in out and "bridge activations" in out and "checkpoint mapping" in out


def test_the_process_footprint_is_measured_once_per_environment(tmp_path, monkeypatch):
    from hap.experiments import footprint

    monkeypatch.setenv("HAP_CACHE", str(tmp_path))
    (tmp_path / "process-footprint.json").write_text("{not json")
    measured = footprint.booted_rss_mb()  # a damaged cache is measured afresh
    # a Python with torch, transformers and a booted bridge holds some hundreds of MB
    assert 150 < measured < 4000
    cache = json.loads((tmp_path / "process-footprint.json").read_text())
    assert cache == {footprint.environment_key(): measured}
    # the next plan reads the figure instead of probing again
    cache[footprint.environment_key()] = 1234.5
    (tmp_path / "process-footprint.json").write_text(json.dumps(cache))
    assert footprint.booted_rss_mb() == 1234.5


def test_a_run_that_will_not_fit_is_refused_before_the_model_loads(monkeypatch, capsys, planned):
    """The plan's peak against the free memory: refused in one line with a batch size that
    fits by the same estimate; --no-memory-check runs regardless. The machine's free memory is
    set (a CPU with 24 GB fits every run on the embedded model)."""
    from hap.experiments import preflight

    own = 50 * 2**20
    config = get_backend("ep").config({"steps": "2"})
    widths = plan.task_widths(planned, "ioi", 0, Split())
    at = {"device": "cpu", "process": own}
    peak = {
        b: plan.estimate(
            planned.shape, widths, "ep", plan.with_batch_size(config, b), **at
        ).peak_bytes
        for b in (8, 32)
    }
    room = peak[8] + (peak[32] - peak[8]) // 4  # 8 fits; the default 32 does not, even at +10%
    assert peak[32] > room * 1.1
    monkeypatch.setattr(preflight, "free_memory", lambda device: (room - own, own))
    loaded = []

    class Loading(Exception):
        pass

    def load(*args):
        loaded.append(args)
        raise Loading

    monkeypatch.setattr("hap.cli.common.load_model_at", load)
    argv = ["discover", "--method", "ep", "--set", "steps=2", "--quiet", "--device", "cpu"]
    assert main(argv) == 2 and not loaded
    message = capsys.readouterr().err.strip()
    assert message.count("\n") == 0 and "no-memory-check" in message, message
    suggested = int(message.split("--set batch_size=")[1].split()[0])
    fits = plan.with_batch_size(config, suggested)
    assert plan.estimate(planned.shape, widths, "ep", fits, **at).peak_bytes <= room
    too_big = plan.with_batch_size(config, suggested + 1)
    assert plan.estimate(planned.shape, widths, "ep", too_big, **at).peak_bytes > room
    # past the check, the run goes on to load the model
    with pytest.raises(Loading):
        main([*argv, "--no-memory-check"])
    assert loaded
