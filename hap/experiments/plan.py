"""Before a run: its peak memory, part by part, from the engine's own formulas (`hap plan`).

Nothing here runs the model: the sizes come from the checkpoint's config.json (parameters counted
on the meta device) and the task's prompt widths from the model's tokenizer alone.

Notation: L layers, H (query) heads, d = d_model, d_head, d_mlp, V vocabulary; S = 1 + L (H + 1)
senders and G = 2 L + 1 receiver groups (hap.engine.graph); a batch of B prompts cut to width P
holds T = B P positions; b bytes per element (4 for fp32 and tf32, 2 for bf16). The parts:

- load: while the bridge boots, a second copy of the weights (hf parameters x b, measured on
  GPT-2); a grouped-K/V checkpoint is read through its file mapping and ungrouped into a new
  model, so its file and a third copy are alive too (measured on SmolLM2's shape).
- process (CPU only): Python with torch, transformers and TransformerLens imported and the
  modules a model's boot adds: measured on this machine (hap.experiments.footprint: a fresh
  interpreter boots the embedded model; its resident set less that model's own resident parts
  by these formulas), cached per interpreter and library versions.
- checkpoint mapping (CPU, GPT-2 at its checkpoint's dtype): the bridge keeps GPT-2's fused
  q/k/v projection as a view of the memory-mapped weight file, so the file stays mapped, and
  every page was read: its size is resident (file pages the kernel may drop under pressure, but
  they count in the peak resident set). Other architectures copy every weight and release it.
- parameters: the bridge's count x b: the checkpoint's own (grouped K/V ungrouped per query head,
  as the loader does), a split copy of a fused q/k/v projection (GPT-2's c_attn) and an untied
  copy of tied embeddings (the bridge keeps both). On a CPU, at the checkpoint's own dtype, the
  fused projection itself stays a view of the mapped file and costs nothing more.
- baseline cache (search): a `Baseline` (hap.engine.ablation) per batch the search prepares, the
  train split and, under the stopping rule, the validation split: (S + G) T d b each.
- engine buffers (search): the edge-masked forward's two buffers of S_active T d b, the deltas
  and their gradients (hap.engine.patching), back in the engine's spare list after each
  backward for the next step; where the train batches differ in size (their widths, a short
  last batch), a step of another size than the first batch's allocates two afresh while the
  spare list holds the first's: 2 T_first S_active d b more (`engine_positions`).
- partly active heads (HAP): where a layer's q, k or v receivers are only partly candidates,
  the engine adds their rows into a copy of the baseline with `index_add`, whose backward keeps
  the added rows ([k, T, d]); between none and 3 H L rows by the candidates' layout, which EAP
  decides: taken as one more buffer of S_active rows, as measured (gpt2-small at 94%: 114 rows).
- bridge activations: what autograd saves in the bridge's forward, per position
  L (3 H d + m d_mlp + 3 H d_head + 2 d + 2.25 H P) + d: each head's own q, k and v input
  ([T, H, d] three times a layer, saved by the per-head layer norm: the dominant term), the
  MLP's hidden activations (m = 4 for GPT-2's GELU, 3 for a gated MLP), the q, k, v projections,
  the two norms' inputs, the attention scores and pattern (tallied with saved_tensors_hooks).
- backward working set: one layer's q, k, v input gradients and their concatenation in the
  engine's (or the attribution's) per-group matmul: 2 x 3 H d T b.
- logits: the forward's [T, V] and its gradient.
- attribution (EAP, EAP-IG, HAP's first stage), per batch: its baseline (S + G) T d b, and the
  clean sender outputs with their concatenation, which becomes the deltas, 2 S T d b; EAP-IG at
  its default (left) points instead runs a clean pass first and keeps its Baseline, (S + G) T d b,
  beside the deltas, S T d b.
- evaluation start (`discover`, `bench`, after EAP or EAP-IG): the evaluation's first forward
  while the attribution's deltas are still held (by the bridge's cached attention pattern,
  attn._pattern, whose grad_fn keeps the last pass's graph, its tensor hooks and their
  closures): S (EAP) or 2 S (EAP-IG, with its clean outputs) rows at the train batch's T; plus
  the first test batch's recorded outputs, (S + G) T d b at 64 prompts.
- evaluation (after that, the test split in batches of 64 without grad): the batch's baseline,
  the circuit's delta buffer (S_circuit T d b, S_circuit <= min(S, the edge budget)), one
  layer's q, k, v inputs, the logits.

Each phase adds WORKING_MB of small tensors, index buffers and allocator arenas (measured on the
embedded model, where they show). The peak is the resident parts plus the largest phase (load,
attribution, search, evaluation start, evaluation).
HAP's active senders are those of its candidate edges, known only after its EAP stage: the
estimate takes min(S, candidates), an upper bound. Models with post-attention norms or parallel
blocks get the same formulas (plus the norms' baselines), uncalibrated.
"""

from __future__ import annotations

import copy
import functools
import math
from dataclasses import dataclass, replace
from pathlib import Path
from types import SimpleNamespace

from hap.engine.graph import Graph
from hap.errors import UserError

MB = 2**20
WORKING_MB = 8  # a phase's small tensors, index buffers and thread arenas (plan_check.py: 1-17)
EVAL_BATCH = 64  # hap.engine.evaluate.evaluate_circuit's batch size
ENGINE_BUFFERS = 2  # the stream's deltas and their gradients (`engine_positions`)
BACKWARD_COPIES = 2  # one layer's q/k/v gradients and their concatenation
SCORE_TERMS = 2.25  # attention scores and pattern saved per head per key position
METHODS = ("eap", "eap-ig", "ep", "hap", "ep-warm", "hap-warm")
# mask learners with an attribution stage first, and those that search only their candidates
ATTRIBUTES_FIRST = ("hap", "ep-warm", "hap-warm")
CANDIDATES_ONLY = ("hap", "hap-warm")
FUSED_QKV = ("gpt2",)  # model types whose q/k/v projection is one matrix the bridge splits
POST_NORM = ("gemma2", "gemma3", "gemma3_text", "olmo2")


@dataclass(frozen=True)
class ModelShape:
    """What the estimate needs of a model, read from its config without loading weights.
    n_params: the bridge's parameters (module docstring); hf_params: the Hugging Face model's
    with grouped K/V ungrouped, loaded_params: as the checkpoint holds them; weights_bytes: the
    checkpoint's weight files on disk; n_ctx: its context (None where the config names none)."""

    name: str
    n_layers: int
    n_heads: int
    d_model: int
    d_head: int
    d_mlp: int
    d_vocab: int
    n_params: int
    hf_params: int
    loaded_params: int
    fused_qkv_params: int
    weights_bytes: int
    weights_dtype: str
    gated_mlp: bool
    n_ctx: int | None = None
    parallel: bool = False
    post_norm: bool = False

    @property
    def graph(self) -> Graph:
        return Graph(
            self.n_layers,
            self.n_heads,
            self.d_model,
            parallel=self.parallel,
            post_norm=self.post_norm,
        )

    def record(self) -> dict:
        graph = self.graph
        return {
            "name": self.name,
            "n_layers": self.n_layers,
            "n_heads": self.n_heads,
            "d_model": self.d_model,
            "d_mlp": self.d_mlp,
            "d_vocab": self.d_vocab,
            "n_params": self.n_params,
            "n_senders": graph.n_senders,
            "n_receivers": graph.n_receivers,
            "n_edges": graph.n_edges,
        }


def shape_from_config(config, name: str, weights_bytes: int = 0) -> ModelShape:
    """The ModelShape of a transformers config (parameters counted on the meta device, with
    grouped K/V ungrouped as hap.models.load_model does)."""
    import torch
    from transformers import AutoModelForCausalLM

    n_heads = int(config.num_attention_heads)
    d_model = int(config.hidden_size)
    d_head = int(getattr(config, "head_dim", None) or d_model // n_heads)
    model_type = str(config.model_type)
    if model_type in FUSED_QKV:
        d_mlp = int(getattr(config, "n_inner", None) or 4 * d_model)
    else:
        d_mlp = int(config.intermediate_size)

    def count(cfg) -> int:
        with torch.device("meta"):
            return sum(p.numel() for p in AutoModelForCausalLM.from_config(cfg).parameters())

    loaded_params = count(config)
    ungrouped = copy.deepcopy(config)
    if getattr(ungrouped, "num_key_value_heads", None) not in (None, n_heads):
        ungrouped.num_key_value_heads = n_heads
        hf_params = count(ungrouped)
    else:
        hf_params = loaded_params
    vocab = int(config.vocab_size)
    n_layers = int(config.num_hidden_layers)
    extra = vocab * d_model if getattr(config, "tie_word_embeddings", False) else 0
    fused = 0
    if model_type in FUSED_QKV:
        fused = n_layers * 3 * (d_model * n_heads * d_head + n_heads * d_head)
    dtype = getattr(config, "dtype", None) or getattr(config, "torch_dtype", None) or "float32"
    n_ctx = getattr(config, "n_positions", None) or getattr(config, "max_position_embeddings", None)
    return ModelShape(
        name=name,
        n_layers=n_layers,
        n_heads=n_heads,
        d_model=d_model,
        d_head=d_head,
        d_mlp=d_mlp,
        d_vocab=vocab,
        n_params=hf_params + extra + fused,
        hf_params=hf_params,
        loaded_params=loaded_params,
        fused_qkv_params=fused,
        weights_bytes=weights_bytes,
        weights_dtype=str(dtype).removeprefix("torch."),
        gated_mlp=model_type not in FUSED_QKV,
        n_ctx=int(n_ctx) if n_ctx else None,
        parallel=bool(getattr(config, "use_parallel_residual", False)),
        post_norm=model_type in POST_NORM,
    )


@dataclass(frozen=True)
class PlannedModel:
    """A model as the plan sees it: its shape, its tokenizer and its tasks' BOS convention;
    `cfg.n_ctx` its context. It has what hap.experiments.runs.build_task reads of a model, so
    the plan's prompts are the run's."""

    shape: ModelShape
    tokenizer: object
    prepend_bos: bool

    @property
    def cfg(self) -> SimpleNamespace:
        return SimpleNamespace(n_ctx=self.shape.n_ctx)


def read_model(name: str | None) -> PlannedModel:
    """The shape and tokenizer of model `name` (None: the embedded one; a name from `hap models`;
    a checkpoint folder; a cached hub name), resolved as hap.models.load_model resolves it but
    without loading weights. A named model whose package is missing is refused in one line with
    its install command (ModelNotFoundError); a broken folder in one line (UserError)."""
    from transformers import AutoConfig, AutoTokenizer

    from hap.models import model_name
    from hap.models.loader import _declared_tokenizer, _offline, _resolve, check_checkpoint
    from hap.models.zoo import REAL_MODELS

    folder = Path(_resolve(name))
    check_checkpoint(folder)
    with _offline():
        config = AutoConfig.from_pretrained(folder)
        tokenizer = _declared_tokenizer(str(folder)) or AutoTokenizer.from_pretrained(folder)
    weights = sum(
        f.stat().st_size for f in folder.iterdir() if f.name.endswith((".safetensors", ".bin"))
    )
    shape = shape_from_config(config, model_name(name), weights)
    spec = REAL_MODELS.get(str(name))
    prepend_bos = spec.prepend_bos if spec else tokenizer.bos_token_id is not None
    return PlannedModel(shape, tokenizer, prepend_bos)


@dataclass(frozen=True)
class Widths:
    """Each prompt's width in tokens (its metric position + 1), per split, in split order."""

    train: tuple[int, ...]
    val: tuple[int, ...]
    test: tuple[int, ...]

    @classmethod
    def of(cls, task) -> Widths:
        def widths(data) -> tuple[int, ...]:
            return tuple(int(p) + 1 for p in data.position.tolist())

        return cls(widths(task.train), widths(task.val), widths(task.test))


def task_widths(model: PlannedModel, spec, seed: int, split) -> Widths:
    """The prompt widths of task `spec` (a name or hap.experiments.runs.TaskSpec) as a run
    draws it for `model` with `seed` and `split` (build_task, the one way every command builds
    its prompts)."""
    from hap.experiments.runs import build_task

    return Widths.of(build_task(model, spec, seed, split))


def batches(widths: tuple[int, ...], batch_size: int) -> list[tuple[int, int]]:
    """(prompts, width) of each batch of `batch_size`, as TaskData.batches cuts a split (each
    batch trimmed to its longest prompt)."""
    return [
        (len(widths[i : i + batch_size]), max(widths[i : i + batch_size]))
        for i in range(0, len(widths), batch_size)
    ]


def tokens(cut: list[tuple[int, int]]) -> int:
    return sum(n * width for n, width in cut)


def largest(cut: list[tuple[int, int]]) -> tuple[int, int]:
    """The batch with the most positions (the costliest step), as (prompts, width)."""
    return max(cut, key=lambda nw: (nw[0] * nw[1], nw[1]), default=(0, 0))


@dataclass(frozen=True)
class Part:
    """One term of an estimate: its bytes and the formula with the numbers put in."""

    name: str
    bytes: int
    formula: str


@dataclass(frozen=True)
class Phase:
    """A stretch of the run whose memory is the sum of its parts (on top of the resident ones)."""

    name: str
    parts: tuple[Part, ...]

    @property
    def bytes(self) -> int:
        return sum(p.bytes for p in self.parts)


@dataclass(frozen=True)
class Estimate:
    """A method's estimated peak: `resident` parts held through the run plus its largest phase."""

    method: str
    model: str
    device: str
    precision: str
    batch_size: int
    resident: tuple[Part, ...]
    phases: tuple[Phase, ...]
    notes: tuple[str, ...] = ()

    @property
    def peak_phase(self) -> Phase:
        return max(self.phases, key=lambda phase: phase.bytes)

    @property
    def peak_bytes(self) -> int:
        return sum(p.bytes for p in self.resident) + self.peak_phase.bytes

    def record(self) -> dict:
        def parts(items: tuple[Part, ...]) -> list[dict]:
            return [
                {"name": p.name, "mb": round(p.bytes / MB, 1), "formula": p.formula} for p in items
            ]

        return {
            "method": self.method,
            "model": self.model,
            "device": self.device,
            "precision": self.precision,
            "batch_size": self.batch_size,
            "peak_mb": round(self.peak_bytes / MB, 1),
            "peak_phase": self.peak_phase.name,
            "resident": parts(self.resident),
            "phases": [
                {"name": ph.name, "mb": round(ph.bytes / MB, 1), "parts": parts(ph.parts)}
                for ph in self.phases
            ],
            "notes": list(self.notes),
        }


_DTYPE_NAMES = {4: "float32", 2: "bfloat16"}


def element_bytes(precision: str) -> int:
    from hap.models import PRECISIONS

    if precision not in PRECISIONS:
        raise UserError(f"unknown precision {precision!r}; choose one of {', '.join(PRECISIONS)}")
    return 2 if precision == "bf16" else 4


def _mb(n: int) -> str:
    return f"{n / MB:,.1f} MB"


_WORKING = Part("working memory", WORKING_MB * MB, "small tensors, index buffers, thread arenas")


class _Terms:
    """The per-position formulas of one model at one precision (module docstring)."""

    def __init__(self, shape: ModelShape, b: int):
        self.shape, self.b = shape, b
        graph = shape.graph
        self.S, self.G = graph.n_senders, len(graph.receiver_groups)
        self.n_edges = graph.n_edges

    def baseline(self, n_tokens: int, label: str) -> Part:
        s = self.shape
        rows = self.S + self.G + (2 * s.n_layers if s.post_norm else 0)
        size = rows * n_tokens * s.d_model * self.b
        return Part(
            label,
            size,
            f"({self.S} + {self.G}) senders and groups x {n_tokens} positions "
            f"x d {s.d_model} x {self.b} B",
        )

    def rows(self, n_rows: int, n_tokens: int, label: str, what: str, note: str = "") -> Part:
        size = n_rows * n_tokens * self.shape.d_model * self.b
        return Part(
            label,
            size,
            f"{what} x {n_tokens} positions{note} x d {self.shape.d_model} x {self.b} B",
        )

    def activations(self, n: int, width: int) -> Part:
        s = self.shape
        m = 3 if s.gated_mlp else 4
        per_layer = (
            3 * s.n_heads * s.d_model
            + m * s.d_mlp
            + 3 * s.n_heads * s.d_head
            + 2 * s.d_model
            + SCORE_TERMS * s.n_heads * width
        )
        per_position = s.n_layers * per_layer + s.d_model
        size = int(per_position * n * width * self.b)
        return Part(
            "bridge activations",
            size,
            f"L {s.n_layers} x (3 H d + {m} d_mlp + 3 H d_head + 2 d + {SCORE_TERMS} H P) + d "
            f"= {per_position:,.0f} per position x {n * width} x {self.b} B",
        )

    def backward(self, n_tokens: int) -> Part:
        s = self.shape
        size = BACKWARD_COPIES * 3 * s.n_heads * s.d_model * n_tokens * self.b
        return Part(
            "backward working set",
            size,
            f"{BACKWARD_COPIES} x 3 H d x {n_tokens} positions x {self.b} B (one layer's q/k/v "
            "gradients and their concatenation)",
        )

    def logits(self, n_tokens: int, copies: int) -> Part:
        size = copies * n_tokens * self.shape.d_vocab * self.b
        return Part(
            "logits", size, f"{copies} x {n_tokens} positions x V {self.shape.d_vocab} x {self.b} B"
        )


def _attribution(
    terms: _Terms, widths: Widths, batch_size: int, ig_steps: int, points: str
) -> Phase:
    n, width = largest(batches(widths.train, batch_size))
    t = n * width
    clean_pass = ig_steps > 0 and points == "left"  # alpha = 1 is not among the points
    parts = [terms.baseline(t, "baseline (one batch)")]
    if clean_pass:
        parts += [
            terms.baseline(t, "clean pass's Baseline"),
            terms.rows(terms.S, t, "deltas", f"S {terms.S}"),
        ]
    else:
        parts.append(terms.rows(2 * terms.S, t, "clean outputs and deltas", f"2 x S {terms.S}"))
    parts += [terms.activations(n, width), terms.backward(t), terms.logits(t, 2), _WORKING]
    return Phase("attribution", tuple(parts))


def _search(
    terms: _Terms, widths: Widths, batch_size: int, by_rule: bool, n_active: int, hap: bool
) -> Phase:
    cut = batches(widths.train, batch_size)
    cached = tokens(cut) + (tokens(batches(widths.val, batch_size)) if by_rule else 0)
    splits = "train + validation" if by_rule else "train"
    n, width = largest(cut)
    t = n * width
    held = engine_positions(cut)
    first = cut[0][0] * cut[0][1] if cut else 0
    note = f" (2 x T {t})"
    if held > ENGINE_BUFFERS * t:
        note = f" (2 x T {held // 2 - first} + 2 x T_first {first}, spare buffers of another size)"
    parts = [
        terms.baseline(cached, f"baseline cache ({splits})"),
        terms.rows(n_active, held, "engine buffers", f"S_active {n_active}", note),
    ]
    if hap:
        parts.append(
            terms.rows(
                n_active,
                t,
                "partly active heads",
                f"S_active {n_active} (index_add sources kept by autograd)",
            )
        )
    parts += [terms.activations(n, width), terms.backward(t), terms.logits(t, 2), _WORKING]
    return Phase("search", tuple(parts))


def engine_positions(cut: list[tuple[int, int]]) -> int:
    """The engine's buffers in a search step over batches `cut`, in positions per active sender
    (x S_active x d x b for bytes), at the costliest step: the deltas and their gradients, 2 T;
    and where a batch's size differs from the first's, the two buffers of the first batch's
    size that the spare list holds meanwhile (hap.engine.patching._Stream takes a spare buffer
    of the exact shape only), 2 T_first more."""
    first = cut[0][0] * cut[0][1] if cut else 0
    return max(
        (
            ENGINE_BUFFERS * n * w + (ENGINE_BUFFERS * first if (n, w) != cut[0] else 0)
            for n, w in cut
        ),
        default=0,
    )


def _evaluation(terms: _Terms, widths: Widths, n_circuit_senders: int) -> Phase:
    n, width = largest(batches(widths.test, EVAL_BATCH))
    t = n * width
    s = terms.shape
    return Phase(
        "evaluation",
        (
            terms.baseline(t, f"baseline (one batch of {EVAL_BATCH})"),
            terms.rows(
                n_circuit_senders, t, "circuit's delta buffer", f"S_circuit {n_circuit_senders}"
            ),
            terms.rows(
                2 * 3 * s.n_heads, t, "one layer's q/k/v inputs", f"2 x 3 H {3 * s.n_heads}"
            ),
            terms.logits(t, 1),
            _WORKING,
        ),
    )


def _evaluation_start(
    terms: _Terms, widths: Widths, batch_size: int, left_rows: int, what: str
) -> Phase:
    """The evaluation's first forward after an attribution pass, whose deltas are still held
    (through the bridge's cached attention pattern, attn._pattern, whose grad_fn keeps that
    pass's autograd graph, its tensor hooks and their closures until the next forward replaces
    it at the last layer)."""
    n, width = largest(batches(widths.train, batch_size))
    t = n * width
    e_n, e_width = largest(batches(widths.test, EVAL_BATCH))
    return Phase(
        "evaluation start",
        (
            terms.rows(left_rows, t, "attribution's deltas, still held", what),
            terms.baseline(e_n * e_width, "first test batch's recorded outputs"),
            _WORKING,
        ),
    )


def _load(shape: ModelShape, b: int, on_cpu: bool) -> Phase:
    """Booting: a second copy of the weights while the bridge takes them over (measured on
    GPT-2: the Hugging Face model's own); a grouped-K/V checkpoint is loaded, read through its
    file mapping and ungrouped into a new model, so its mapped file and a third copy are alive
    too (measured on SmolLM2's shape)."""
    parts = [
        Part("second copy of the weights", shape.hf_params * b, f"{shape.hf_params:,} x {b} B")
    ]
    if shape.loaded_params != shape.hf_params:
        parts.append(
            Part(
                "ungrouped copy (grouped K/V)", shape.hf_params * b, f"{shape.hf_params:,} x {b} B"
            )
        )
        if on_cpu:
            parts.append(
                Part("grouped checkpoint, mapped", shape.weights_bytes, "weight files, read")
            )
    return Phase("load", tuple(parts))


def _model_resident(shape: ModelShape, b: int, on_cpu: bool) -> list[Part]:
    """What the loaded model itself keeps resident: its parameters and, on a CPU, the weight
    files that a fused q/k/v projection's views keep mapped."""
    n_params, mapped = shape.n_params, ""
    views = on_cpu and shape.fused_qkv_params and shape.weights_dtype == _DTYPE_NAMES[b]
    if views:
        n_params -= shape.fused_qkv_params
        mapped = f" (less the fused q/k/v's {shape.fused_qkv_params:,}, views of the mapping)"
    resident = [Part("parameters", n_params * b, f"{n_params:,} bridge parameters x {b} B{mapped}")]
    if views:
        mapping = "weight files, kept mapped by the fused q/k/v's views"
        resident.insert(0, Part("checkpoint mapping", shape.weights_bytes, mapping))
    return resident


@functools.cache
def process_bytes() -> int:
    """The process's own resident bytes on this machine: a fresh interpreter that booted the
    embedded model (hap.experiments.footprint), less that model's resident parts."""
    from hap.experiments.footprint import booted_rss_mb

    default = read_model(None).shape
    model = sum(p.bytes for p in _model_resident(default, 4, on_cpu=True))
    return max(0, int(booted_rss_mb() * MB) - model)


def estimate(
    shape: ModelShape,
    widths: Widths,
    method: str,
    config,
    sparsity: float = 0.94,
    device: str = "cpu",
    precision: str = "fp32",
    evaluate: bool = True,
    process: int | None = None,
) -> Estimate:
    """The estimated peak memory of `method` with its resolved `config` (the backend's dataclass,
    batch size included) on `shape`, for a task of prompt `widths`, at `sparsity` (HAP's
    candidate count), on `device` ("cpu" counts the process and the mapped checkpoint too;
    "cuda" counts what torch.cuda.max_memory_allocated does). `evaluate`: the run evaluates its
    circuit on the test split afterwards (discover, bench). `process`: the process's own bytes
    on a CPU (default: measured on this machine, `process_bytes`)."""
    if method not in METHODS:
        raise UserError(f"unknown method {method!r}; hap plan estimates {', '.join(METHODS)}")
    b = element_bytes(precision)
    terms = _Terms(shape, b)
    from hap.search.selection import edges_for_sparsity

    n_keep = edges_for_sparsity(shape.graph, sparsity)
    search = getattr(config, "search", config)
    batch_size = int(search.batch_size)
    notes: list[str] = []
    on_cpu = device.split(":")[0] == "cpu"
    resident = _model_resident(shape, b, on_cpu)
    if on_cpu:
        own = process_bytes() if process is None else process
        resident.insert(0, Part("process", own, "python, torch, transformers, TL"))
        notes.append(
            "CPU: live memory; with glibc's defaults freed blocks of up to 32 MB stay in its "
            "heap and the resident set can sit well above (--compact-memory makes it follow, "
            "at about 1.7x the step time)"
        )
    else:
        notes.append("CUDA: tensors only (max_memory_allocated); the context and cache come on top")
    phases = [_load(shape, b, on_cpu)]
    if method in ("eap", "eap-ig"):
        phases.append(_attribution(terms, widths, batch_size, config.ig_steps, config.ig_points))
        left_rows = terms.S * (2 if config.ig_steps > 0 and config.ig_points == "left" else 1)
        left = f"{left_rows // terms.S} x S {terms.S} (the deltas and EAP-IG's clean outputs)"
        if evaluate and widths.test:
            phases.append(_evaluation_start(terms, widths, batch_size, left_rows, left))
    else:
        n_active = terms.S
        if method in ATTRIBUTES_FIRST:
            phases.append(
                _attribution(terms, widths, batch_size, config.ig_steps, config.ig_points)
            )
        if method in CANDIDATES_ONLY:
            n_candidates = min(terms.n_edges, math.ceil(config.candidate_multiple * n_keep))
            n_active = min(terms.S, n_candidates)
            notes.append(
                f"{method}: {n_candidates:,} candidate edges; their senders are known after EAP, "
                f"counted as min(S, candidates) = {n_active}; the partly active heads' part is "
                "one buffer, as measured (0 to 3 H L rows by the candidates' layout)"
            )
        by_rule = search.steps is None
        phases.append(
            _search(terms, widths, batch_size, by_rule, n_active, method in CANDIDATES_ONLY)
        )
    if evaluate and widths.test:
        phases.append(_evaluation(terms, widths, min(terms.S, n_keep)))
    if search.ablation == "mean":
        notes.append(
            "mean ablation: the baselines are per-position means broadcast over each batch, so "
            "the baseline parts are upper bounds (counted as corrupted's)"
        )
    if shape.post_norm or shape.parallel:
        notes.append("post-attention norms / parallel blocks: these formulas are not calibrated")
    return Estimate(
        method=method,
        model=shape.name,
        device=device,
        precision=precision,
        batch_size=batch_size,
        resident=tuple(resident),
        phases=tuple(phases),
        notes=tuple(notes),
    )


def fits(estimate: Estimate, free_bytes: int, margin: float = 0.1) -> bool:
    """Whether `estimate`'s peak, plus a `margin` fraction of it, fits in `free_bytes`."""
    return estimate.peak_bytes * (1.0 + margin) <= free_bytes


def with_batch_size(config, batch_size: int):
    """`config` (a backend's dataclass, HAP's nested search included) at `batch_size`."""
    if hasattr(config, "search"):
        return replace(config, search=replace(config.search, batch_size=batch_size))
    return replace(config, batch_size=batch_size)


def largest_batch(
    shape: ModelShape,
    widths: Widths,
    method: str,
    config,
    free_bytes: int,
    margin: float = 0.1,
    **kwargs,
) -> int | None:
    """The largest batch size, any whole number up to the train split's size (a larger batch is
    the whole split), whose estimate `fits` in `free_bytes`; None where even 1 does not. Found
    by bisection: the estimate grows with the batch size."""

    def fits_at(batch_size: int) -> bool:
        chosen = with_batch_size(config, batch_size)
        return fits(estimate(shape, widths, method, chosen, **kwargs), free_bytes, margin)

    if not fits_at(1):
        return None
    low, high = 1, max(1, len(widths.train)) + 1  # fits at low, not known at high
    while high - low > 1:
        middle = (low + high) // 2
        low, high = (middle, high) if fits_at(middle) else (low, middle)
    return low


def time_step(model, graph: Graph, task, method: str, config, sparsity: float = 0.94) -> dict:
    """Wall seconds of one step of `method` on a loaded `model`, each after one untimed
    warm-up: EAP and EAP-IG one attribution pass over the train split's first batch
    (`attribution_s`); EP one search step over every edge (`step_s`); HAP its attribution pass
    and one search step over its candidates. On CUDA, timed with CUDA events (hap.timing)."""
    import torch

    from hap.engine import metrics
    from hap.engine.ablation import fixed_references
    from hap.engine.patching import EdgeMaskedForward
    from hap.search.attribution import attribution_scores
    from hap.search.hybrid import candidate_edges
    from hap.search.masks import sample_mask
    from hap.search.selection import edges_for_sparsity
    from hap.timing import measure

    device = next(model.parameters()).device
    search = getattr(config, "search", config)
    train = task.train.to(device)
    batch = next(train.batches(search.batch_size))
    times: dict[str, float] = {}

    def timed(fn):
        fn()
        out, measured = measure(fn, device)
        return out, measured.wall_s

    scores = None
    if method != "ep":
        metric = config.attribution_metric if method in ATTRIBUTES_FIRST else config.metric

        def attribution():
            return attribution_scores(
                model,
                graph,
                batch,
                metric,
                config.ig_steps,
                search.batch_size,
                search.ablation,
                config.ig_points,
            )

        scores, times["attribution_s"] = timed(attribution)
    if method == "ep" or method in ATTRIBUTES_FIRST:
        active = None
        if method in CANDIDATES_ONLY:
            n_keep = edges_for_sparsity(graph, sparsity)
            active = candidate_edges(scores, n_keep, config.candidate_multiple)
        full, baseline = fixed_references(model, graph, batch, search.ablation, train)
        engine = EdgeMaskedForward(model, graph, active)
        log_alpha = torch.full(
            (engine.n_active,), search.init_log_alpha, device=device, requires_grad=True
        )

        def step() -> None:
            logits = engine(batch.clean, sample_mask(log_alpha), baseline)
            kl = metrics.kl_divergence(full, metrics.at_position(logits, batch.position))
            kl.mean().backward()
            log_alpha.grad = None

        _, times["step_s"] = timed(step)
    return times
