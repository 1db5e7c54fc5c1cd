"""One run, built and executed in one place: the model at its precision, the task that (task,
model, seed, split sizes) names, and one method searched, timed and evaluated on it. `hap
discover`, `hap bench` (either executor), `hap frontier`, `hap baseline`, `hap mib` and the case
study all come through here, so a prompt set or an evaluation setting cannot drift between
commands."""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import partial

import torch

from hap import allocator
from hap.engine.evaluate import Evaluation, evaluate_circuit
from hap.engine.graph import Graph
from hap.engine.live import count_live
from hap.io.circuit import Circuit
from hap.tasks import check_sizes, is_task_file, make_task, read_task_file, task_key
from hap.tasks.base import Task, check_context
from hap.tasks.schemas import DEFAULT_COUNTERFACTUAL
from hap.timing import Measured, measure


@dataclass(frozen=True)
class Split:
    """The split sizes a run draws (train for the search, validation for the stopping rule,
    test for the evaluation). None is the task's default: 64 / 64 / 200 for a built-in task
    (every command's, so `discover`, `evaluate`, `baseline` and `bench` evaluate the same test
    prompts for one seed), a task file's own split column, or 40% / 20% / 40% of its rows."""

    n_train: int | None = None
    n_val: int | None = None
    n_test: int | None = None

    def record(self) -> dict[str, int | None]:
        return {"n_train": self.n_train, "n_val": self.n_val, "n_test": self.n_test}


@dataclass(frozen=True)
class TaskSpec:
    """What names a run's data: a built-in task or a task file (with its format and MIB
    counterfactual column, where given)."""

    name: str = "ioi"
    format: str | None = None
    counterfactual: str | None = None

    def sizes(self, split: Split) -> dict[str, int]:
        """The split sizes this task will draw (checked before any model loads)."""
        return check_sizes(self.name, *split.record().values(), self.format, self.counterfactual)

    def label(self) -> str:
        """The task as a results row names it: a built-in's name, or a file's path with its
        content hash (so an edited file's rows are never averaged with the old ones)."""
        if not is_task_file(self.name):
            return self.name
        record = read_task_file(self.name, self.format, self.counterfactual).record()
        label = f"{self.name}@{record['task_sha256'][:12]}"
        default = DEFAULT_COUNTERFACTUAL.get(record["task_format"])
        cf = record["counterfactual"]
        return label + (f"#{cf}" if cf and cf != default else "")

    def key(self) -> str:
        """The task's part of a resume key: a file's path, content hash, format, counterfactual."""
        return task_key(self.name, self.format, self.counterfactual)


def load_model_at(name: str | None, device: str | None, precision: str = "fp32"):
    """The model `name` (None: the embedded one) on `device` at `precision`, one of
    hap.models.PRECISIONS (its dtype, and TF32 matmuls switched on or off for this process),
    with the precision asked for kept as `model.precision`: every command and sweep worker loads
    through here, so every result can record what it ran at. On a CPU, tf32 computes exactly as
    fp32 (the switch is CUDA's) and is still recorded as tf32, as asked."""
    from hap.models import load_model, precision_dtype

    model = load_model(name, device=device, dtype=precision_dtype(precision))
    model.precision = precision
    return model


def precision_of(model) -> str:
    """The precision `model` runs at: the one load_model_at kept, else read off its weights
    (a model loaded by hand: "bf16", "fp32", or another dtype's own name, e.g. "float64")."""
    recorded = getattr(model, "precision", None)
    if isinstance(recorded, str):
        return recorded
    dtype = next(model.parameters()).dtype
    return {torch.bfloat16: "bf16", torch.float32: "fp32"}.get(
        dtype, str(dtype).removeprefix("torch.")
    )


def build_task(model, name: str | TaskSpec, seed: int, split: Split = Split()) -> Task:
    """The task `name` (a built-in, a task file's path, or a TaskSpec) drawn by `seed` with
    `split`'s sizes, for `model`'s tokenizer and its BOS convention: the one way every command
    builds its prompts."""
    spec = name if isinstance(name, TaskSpec) else TaskSpec(name)
    task = make_task(
        spec.name,
        model.tokenizer,
        n_train=split.n_train,
        n_val=split.n_val,
        n_test=split.n_test,
        seed=seed,
        prepend_bos=model.prepend_bos,
        task_format=spec.format,
        counterfactual=spec.counterfactual,
    )
    check_context(task, getattr(model.cfg, "n_ctx", None))
    return task


def config_ablation(config) -> str:
    """The ablation a backend's resolved config searches under (HAP keeps it in `search`)."""
    return getattr(getattr(config, "search", config), "ablation", "corrupted")


def result_record(circuit: Circuit, result: Evaluation, graph: Graph, ablation: str) -> dict:
    """The circuit's and its evaluation's fields that `hap discover --json`, the results CSV and
    `hap evaluate` share (scripts rely on these keys). `budget`: the edges asked for;
    `n_edges`: the edges kept; `live_edges`: those on a path from the input to the logits under
    `ablation`; `sparsity`: 1 - live / all edges, the achieved sparsity every comparison uses.
    `steps`: search steps run (None for methods without them); `config`: the resolved config."""
    live = count_live(graph, circuit.mask, ablation)
    return {
        "steps": circuit.steps,
        "config": json.dumps(circuit.config, sort_keys=True),
        "target_sparsity": circuit.target_sparsity,
        "selection": circuit.details.get("selection"),
        "budget": circuit.details.get("budget"),
        "n_edges": circuit.n_edges,
        "live_edges": live,
        "sparsity": 1.0 - live / graph.n_edges,
        "kl": result.kl,
        "logit_diff": result.logit_diff,
        "accuracy": result.accuracy,
        "exact_match": result.exact_match,
        "faithfulness": result.faithfulness,
        "full_logit_diff": result.full_logit_diff,
    }


@dataclass
class RunResult:
    circuit: Circuit
    evaluation: Evaluation
    cost: Measured
    ablation: str

    def record(self, graph: Graph) -> dict:
        """result_record plus the run's cost and stage timings."""
        circuit = self.circuit
        return {
            **result_record(circuit, self.evaluation, graph, self.ablation),
            "stopped": circuit.details.get("stopped"),
            "wall_s": self.cost.wall_s,
            "cpu_s": self.cost.cpu_s,
            "peak_mem_mb": self.cost.peak_mem_mb,
            "attribution_s": circuit.timings.get("attribution", 0.0),
            "pruning_s": circuit.timings.get("pruning", 0.0),
            "step_s": circuit.details.get("step_s"),
        }


def run_one(
    model, graph: Graph, task: Task, method: str, sparsity: float, seed: int, config
) -> RunResult:
    """`method` at `sparsity` on `task`'s train split, timed, and its circuit evaluated on the
    test split under the ablation it searched under. Raises RunFailed for a failed search."""
    from hap.experiments.registry import get_backend

    backend = get_backend(method)
    device = next(model.parameters()).device
    run = partial(backend, model, graph, task, sparsity, seed=seed, config=config)
    circuit, cost = measure(run, device)
    circuit.details["task"] = {"name": task.name, "seed": task.seed, **task.record()}
    circuit.details["precision"] = precision_of(model)
    circuit.details["allocator"] = allocator.setting()
    ablation = config_ablation(config)
    evaluation = evaluate_circuit(model, graph, task.test, circuit.mask, ablation=ablation)
    return RunResult(circuit, evaluation, cost, ablation)


def calibration_note(model_name: str, n_edges: int) -> str | None:
    """What a user must know when the search's constants meet a model they were not calibrated
    on (recorded in the sweep's metadata), or None on the model they were calibrated on."""
    from hap.models import DEFAULT_MODEL_NAME

    if model_name == DEFAULT_MODEL_NAME:
        return None
    return (
        f"the search's lr, lambda_lr, warmup and stopping-rule constants were calibrated on "
        f"{DEFAULT_MODEL_NAME} (1,519 edges, validation seeds 100-101); {model_name} has "
        f"{n_edges:,} edges. They apply unchanged (the budget is the shared stopping rule, "
        "the same for EP and HAP) unless --set changes them"
    )
