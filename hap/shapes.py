"""Randomly initialised GPT-2 checkpoints of a named shape, with the embedded tokenizer.

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
CACHE = Path(__file__).resolve().parent.parent / ".cache" / "shapes"
_TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json")


def build_checkpoint(shape: str, seed: int = 0, root: Path = CACHE) -> Path:
    """The folder of a random-init GPT-2 checkpoint of `shape` (a key of SHAPES) under `root`,
    written on first use. Vocabulary, context and activation follow the embedded model."""
    from transformers import GPT2Config, GPT2LMHeadModel

    if shape not in SHAPES:
        raise ValueError(f"unknown shape {shape!r}; choose one of {sorted(SHAPES)}")
    folder = Path(root) / f"{shape}-seed{seed}"
    if (folder / "model.safetensors").exists():
        return folder
    default = json.loads((DEFAULT_MODEL_DIR / "config.json").read_text())
    config = GPT2Config(
        vocab_size=default["vocab_size"],
        n_positions=default["n_positions"],
        bos_token_id=default["bos_token_id"],
        eos_token_id=default["eos_token_id"],
        pad_token_id=default["pad_token_id"],
        activation_function=default["activation_function"],
        attn_pdrop=0.0,
        embd_pdrop=0.0,
        resid_pdrop=0.0,
        **SHAPES[shape],
    )
    torch.manual_seed(seed)
    model = GPT2LMHeadModel(config)
    tmp = folder.with_name(folder.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(tmp)
    for name in _TOKENIZER_FILES:
        shutil.copy(DEFAULT_MODEL_DIR / name, tmp / name)
    shutil.rmtree(folder, ignore_errors=True)
    tmp.rename(folder)
    return folder
