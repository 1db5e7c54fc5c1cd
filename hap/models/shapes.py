"""Randomly initialised checkpoints of a named shape (GPT-2, Llama or Gemma-3 architecture), with
the embedded tokenizer.

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
# Gemma-3: post-attention norms, QK-norm, local/global layers (refused by the engine).
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
ALL_SHAPES = (*SHAPES, *LLAMA_SHAPES, *GEMMA_SHAPES)
CACHE = Path(__file__).resolve().parents[2] / ".cache" / "shapes"
_TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json")


def build_checkpoint(shape: str, seed: int = 0, root: Path = CACHE) -> Path:
    """The folder of a random-init checkpoint of `shape` (a key of SHAPES, LLAMA_SHAPES or
    GEMMA_SHAPES) under `root`, written on first use. Vocabulary and context follow the
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
    else:
        from transformers import Gemma3ForCausalLM, Gemma3TextConfig

        model = Gemma3ForCausalLM(
            Gemma3TextConfig(
                max_position_embeddings=default["n_positions"], **common, **GEMMA_SHAPES[shape]
            )
        )
    tmp = folder.with_name(folder.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(tmp)
    for name in _TOKENIZER_FILES:
        shutil.copy(DEFAULT_MODEL_DIR / name, tmp / name)
    shutil.rmtree(folder, ignore_errors=True)
    tmp.rename(folder)
    return folder


def _perturb_norms(model, seed: int) -> None:
    """RMSNorm weights start at one; random ones make a test see a norm folded the wrong way."""
    generator = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if "norm" in name:
                parameter.copy_(1 + 0.3 * torch.randn(parameter.shape, generator=generator))
