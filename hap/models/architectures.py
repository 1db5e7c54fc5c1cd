"""The model families the engine patches exactly, and those it refuses, with why.

Each row names a random-init shape (`hap.models.shapes`) on which its status is tested
(tests/test_architectures.py boots every shape and checks that supported ones patch exactly and
refused ones fail with the stated reason), and the real checkpoints it was run on here. The edge
counts follow `hap.engine.graph.edge_count`.
"""

from __future__ import annotations

from dataclasses import dataclass

SEQUENTIAL_EDGES = "L(3H+1)(1+(L-1)(H+1)/2) + LH + 1 + L(H+1)"
PARALLEL_EDGES = "L(3H+1)(1+(L-1)(H+1)/2) + 1 + L(H+1)"


@dataclass(frozen=True)
class Architecture:
    """One family: `supported` is True when circuits are searched exactly, and `note` says how;
    otherwise `note` is a fragment of the one-line refusal the engine gives it (tested)."""

    family: str
    classes: str
    supported: bool
    note: str
    shape: str  # the random-init shape that tests this row
    checked: str = ""  # real checkpoints run end to end here

    @property
    def edges(self) -> str:
        if not self.supported:
            return ""
        return PARALLEL_EDGES if "parallel" in self.note else SEQUENTIAL_EDGES


ARCHITECTURES: tuple[Architecture, ...] = (
    Architecture(
        "GPT-2",
        "GPT2LMHeadModel",
        True,
        "sequential blocks, LayerNorm",
        "tiny",
        "hap-default (trained here); GPT-2-small shape",
    ),
    Architecture(
        "Llama, SmolLM2",
        "LlamaForCausalLM",
        True,
        "grouped-query attention ungrouped per query head (k/v receivers per query head)",
        "llama-tiny",
        "smollm2-135m",
    ),
    Architecture(
        "Qwen2, Qwen2.5",
        "Qwen2ForCausalLM",
        True,
        "as Llama, with q/k/v biases",
        "qwen2-tiny",
    ),
    Architecture(
        "Qwen3", "Qwen3ForCausalLM", True, "as Llama, with a per-head QK-norm", "qwen3-tiny"
    ),
    Architecture("Mistral", "MistralForCausalLM", True, "as Llama", "mistral-tiny"),
    Architecture(
        "Gemma-3",
        "Gemma3ForCausalLM",
        True,
        "post-attention norm: a head sends its output before the norm; each receiver "
        "re-applies the norm to its own mix of the layer's heads",
        "gemma-tiny",
        "gemma-3-270m",
    ),
    Architecture(
        "Gemma-2",
        "Gemma2ForCausalLM",
        True,
        "post-attention norm as Gemma-3; logit soft-capping inside the logits node",
        "gemma2-tiny",
    ),
    Architecture(
        "GPT-NeoX, Pythia",
        "GPTNeoXForCausalLM",
        True,
        "parallel attention and MLP: no head -> own-MLP edges",
        "pythia-tiny",
    ),
    Architecture(
        "OLMo-2",
        "Olmo2ForCausalLM",
        False,
        "OLMo-2's QK-norm",
        "olmo2-tiny",
    ),
    Architecture(
        "Phi-1, Phi-2",
        "PhiForCausalLM",
        False,
        "never fires blocks.1.hook_mlp_in",
        "phi-tiny",
    ),
    Architecture(
        "GPT-J",
        "GPTJForCausalLM",
        False,
        "no per-head q/k/v input hooks",
        "gptj-tiny",
    ),
    Architecture(
        "Phi-3",
        "Phi3ForCausalLM",
        False,
        "fused q/k/v projection",
        "phi3-tiny",
    ),
)

_REFUSAL_WHY = {
    "OLMo-2": "its QK-norm spans all heads, so one head's q/k input reaches the others",
    "Phi-1, Phi-2": "TransformerLens's bridge exposes no MLP-input hook for Phi",
    "GPT-J": "TransformerLens's bridge has no hook before its joint q/k/v projection",
    "Phi-3": "grouped-query attention behind a fused q/k/v projection, which the loader "
    "cannot ungroup",
}


def why(arch: Architecture) -> str:
    """The row's status in words."""
    return f"exact: {arch.note}" if arch.supported else f"refused: {_REFUSAL_WHY[arch.family]}"


def markdown() -> str:
    """The architectures table as Markdown (the README's copy is tested against it)."""
    lines = [
        "| Family | transformers class | Status | Edges (L layers, H query heads) | Run here |",
        "|---|---|---|---|---|",
    ]
    for arch in ARCHITECTURES:
        status = why(arch)
        checked = ", ".join(x for x in (f"`{arch.shape}` shape", arch.checked) if x)
        edges = f"`{arch.edges}`" if arch.edges else ""
        lines.append(f"| {arch.family} | {arch.classes} | {status} | {edges} | {checked} |")
    return "\n".join(lines)
