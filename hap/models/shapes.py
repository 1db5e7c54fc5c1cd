"""Randomly initialised checkpoints of a named shape (GPT-2, Llama, Gemma-2/3, Qwen2/3, Mistral,
GPT-NeoX / Pythia, and the families the engine refuses), with the embedded tokenizer.

The engine's costs only show at scale and its exactness must hold beyond the one trained model,
so benchmarks and tests build models from a config and a seed (no download): the checkpoint is
written once with `save_pretrained` and booted through `load_model(path)` like any user's model.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import torch

from hap.models import DEFAULT_MODEL_DIR

SHAPES: dict[str, dict[str, int]] = {
    "gpt2-small": {"n_layer": 12, "n_head": 12, "n_embd": 768},  # 32,491 edges
    "default": {"n_layer": 4, "n_head": 8, "n_embd": 128},
    "tiny": {"n_layer": 2, "n_head": 4, "n_embd": 64},
}
# Llama-family shapes: grouped-query attention (2 or 3 query heads per KV head), RMSNorm, RoPE,
# SwiGLU, tied embeddings. "smollm2" is SmolLM2-135M's shape (123,211 edges) with random weights.
LLAMA_SHAPES: dict[str, dict[str, int]] = {
    "llama-tiny": {
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "hidden_size": 64,
        "intermediate_size": 128,
    },
    "smollm2": {
        "num_hidden_layers": 30,
        "num_attention_heads": 9,
        "num_key_value_heads": 3,
        "hidden_size": 576,
        "intermediate_size": 1536,
    },
}
# Gemma-3: post-attention norms, QK-norm, local/global layers.
GEMMA_SHAPES: dict[str, dict[str, int]] = {
    "gemma-tiny": {
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "num_key_value_heads": 1,
        "head_dim": 16,
        "hidden_size": 64,
        "intermediate_size": 128,
        "sliding_window": 4,
    },
}
_TINY = {"num_hidden_layers": 2, "num_attention_heads": 4, "hidden_size": 64}
# Other families, 2 layers x 4 heads, d64: (transformers config class, model class, settings).
# The refused ones are here so that their refusal is tested, not assumed.
FAMILY_SHAPES: dict[str, tuple[str, str, dict]] = {
    "qwen2-tiny": (  # q/k/v biases, grouped-query attention
        "Qwen2Config",
        "Qwen2ForCausalLM",
        {**_TINY, "num_key_value_heads": 2, "intermediate_size": 128},
    ),
    "qwen3-tiny": (  # per-head QK-norm, no q/k/v biases
        "Qwen3Config",
        "Qwen3ForCausalLM",
        {**_TINY, "num_key_value_heads": 2, "head_dim": 16, "intermediate_size": 128},
    ),
    "mistral-tiny": (
        "MistralConfig",
        "MistralForCausalLM",
        {**_TINY, "num_key_value_heads": 2, "intermediate_size": 128, "sliding_window": None},
    ),
    "gemma2-tiny": (  # post-attention norms, logit soft-capping, local/global layers
        "Gemma2Config",
        "Gemma2ForCausalLM",
        {
            **_TINY,
            "num_key_value_heads": 2,
            "head_dim": 16,
            "intermediate_size": 128,
            "sliding_window": 4,
        },
    ),
    "pythia-tiny": (  # GPT-NeoX: parallel attention and MLP, partial rotary
        "GPTNeoXConfig",
        "GPTNeoXForCausalLM",
        {**_TINY, "intermediate_size": 256, "use_parallel_residual": True, "rotary_pct": 0.25},
    ),
    "olmo2-tiny": (  # refused: its QK-norm spans all heads
        "Olmo2Config",
        "Olmo2ForCausalLM",
        {**_TINY, "intermediate_size": 128},
    ),
    "phi-tiny": (  # refused: the bridge has no MLP-input hook for Phi
        "PhiConfig",
        "PhiForCausalLM",
        {**_TINY, "intermediate_size": 256, "partial_rotary_factor": 0.5},
    ),
    "gptj-tiny": (  # refused: no hook before the q/k/v projections
        "GPTJConfig",
        "GPTJForCausalLM",
        {"n_layer": 2, "n_head": 4, "n_embd": 64, "rotary_dim": 8},
    ),
    "phi3-tiny": (  # refused: fused qkv projection with grouped-query attention
        "Phi3Config",
        "Phi3ForCausalLM",
        {**_TINY, "num_key_value_heads": 2, "intermediate_size": 128},
    ),
}
ALL_SHAPES = (*SHAPES, *LLAMA_SHAPES, *GEMMA_SHAPES, *FAMILY_SHAPES)
CACHE = Path(__file__).resolve().parents[2] / ".cache" / "shapes"
_TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json")


def build_checkpoint(shape: str, seed: int = 0, root: Path = CACHE) -> Path:
    """The folder of a random-init checkpoint of `shape` (a key of SHAPES, LLAMA_SHAPES,
    GEMMA_SHAPES or FAMILY_SHAPES) under `root`, written on first use. Vocabulary and context follow the
    embedded model, so its tokenizer and tasks run on every shape."""
    if shape not in ALL_SHAPES:
        raise ValueError(f"unknown shape {shape!r}; choose one of {sorted(ALL_SHAPES)}")
    folder = Path(root) / f"{shape}-seed{seed}"
    if (folder / "model.safetensors").exists():
        return folder
    default = json.loads((DEFAULT_MODEL_DIR / "config.json").read_text())
    common = {
        "vocab_size": default["vocab_size"],
        "bos_token_id": default["bos_token_id"],
        "eos_token_id": default["eos_token_id"],
        "pad_token_id": default["pad_token_id"],
    }
    torch.manual_seed(seed)
    if shape in SHAPES:
        from transformers import GPT2Config, GPT2LMHeadModel

        model = GPT2LMHeadModel(
            GPT2Config(
                n_positions=default["n_positions"],
                activation_function=default["activation_function"],
                attn_pdrop=0.0,
                embd_pdrop=0.0,
                resid_pdrop=0.0,
                **common,
                **SHAPES[shape],
            )
        )
    elif shape in LLAMA_SHAPES:
        from transformers import LlamaConfig, LlamaForCausalLM

        model = LlamaForCausalLM(
            LlamaConfig(
                max_position_embeddings=default["n_positions"],
                tie_word_embeddings=True,
                rope_parameters={"rope_theta": 100000.0, "rope_type": "default"},
                **common,
                **LLAMA_SHAPES[shape],
            )
        )
        _perturb_norms(model, seed)
    elif shape in GEMMA_SHAPES:
        from transformers import Gemma3ForCausalLM, Gemma3TextConfig

        model = Gemma3ForCausalLM(
            Gemma3TextConfig(
                max_position_embeddings=default["n_positions"], **common, **GEMMA_SHAPES[shape]
            )
        )
    else:
        import transformers

        config_class, model_class, settings = FAMILY_SHAPES[shape]
        positions = "n_positions" if "n_layer" in settings else "max_position_embeddings"
        config = getattr(transformers, config_class)(
            **{positions: default["n_positions"]}, **common, **settings
        )
        model = getattr(transformers, model_class)(config)
        _perturb_norms(model, seed)
        _perturb_biases(model, seed)
    tmp = folder.with_name(folder.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(tmp)
    for name in _TOKENIZER_FILES:
        shutil.copy(DEFAULT_MODEL_DIR / name, tmp / name)
    shutil.rmtree(folder, ignore_errors=True)
    tmp.rename(folder)
    return folder


def _perturb_norms(model, seed: int) -> None:
    """Norm weights start at one (or zero, Gemma's offset form); random ones make a test see a
    norm folded or applied the wrong way."""
    generator = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if "norm" in name:
                parameter.copy_(1 + 0.3 * torch.randn(parameter.shape, generator=generator))


def _perturb_biases(model, seed: int) -> None:
    """Linear biases start at zero; nonzero ones make a test see a bias counted per head, or
    once per receiver, where it belongs to the layer."""
    generator = torch.Generator().manual_seed(seed + 2)
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if name.endswith(".bias") and "norm" not in name:
                parameter.copy_(0.1 * torch.randn(parameter.shape, generator=generator))
