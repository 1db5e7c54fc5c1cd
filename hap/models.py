"""Load a model as a TransformerBridge ready for edge-level patching.

`load_model()` boots the embedded default model (committed in `hap/assets/default`); a local path
boots that HF checkpoint; a hub name (e.g. "gpt2") boots from the user's HF cache, offline. The
bridge comes back in compatibility mode with the hooks the graph needs switched on: split q/k/v
inputs, per-head results and the MLP-input hook. Parameters are frozen: every method here takes
gradients with respect to activations or masks, never weights.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

DEFAULT_MODEL_DIR = Path(__file__).parent / "assets" / "default"
DEFAULT_MODEL_NAME = "hap-default"


PRECISIONS = ("fp32", "tf32", "bf16")


def precision_dtype(precision: str) -> torch.dtype:
    """The dtype to load a model with for `precision`, switching TF32 matmuls on for "tf32" and
    off otherwise (a process-wide CUDA switch; no effect on a CPU). fp32: exact. tf32: float32
    storage, matmuls with a 10-bit mantissa on Ampere and later GPUs. bf16: weights and
    activations in bfloat16; masks, KL and attribution scores are still accumulated in float32.
    tests/test_engine.py bounds bf16's error against fp32 on the default model."""
    if precision not in PRECISIONS:
        raise ValueError(f"unknown precision {precision!r}; choose one of {', '.join(PRECISIONS)}")
    torch.backends.cuda.matmul.allow_tf32 = precision == "tf32"
    torch.backends.cudnn.allow_tf32 = precision == "tf32"
    return torch.bfloat16 if precision == "bf16" else torch.float32


class ModelNotFoundError(FileNotFoundError):
    """The requested weights are not available on this machine."""


def pick_device(device: str | torch.device | None = None) -> torch.device:
    """CUDA when available, else CPU; an explicit choice wins (and must exist)."""
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    chosen = torch.device(device)
    if chosen.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("device 'cuda' requested but CUDA is not available; use --device cpu")
    return chosen


def _resolve(name_or_path: str | os.PathLike | None) -> str:
    if name_or_path is None or str(name_or_path) == DEFAULT_MODEL_NAME:
        return str(DEFAULT_MODEL_DIR)
    path = Path(name_or_path).expanduser()
    if path.exists():
        if not (path / "config.json").exists():
            raise ModelNotFoundError(
                f"{path} has no config.json: point --model at a Hugging Face checkpoint folder"
            )
        return str(path)
    if str(name_or_path).startswith((".", "/", "~")):
        raise ModelNotFoundError(f"model path {name_or_path} does not exist")
    try:
        from huggingface_hub import snapshot_download

        return snapshot_download(str(name_or_path), local_files_only=True)
    except Exception as error:  # the hub client raises several types for "not cached"
        raise ModelNotFoundError(
            f"model {name_or_path!r} is not in the local Hugging Face cache and this machine is "
            "offline: download it where there is network (huggingface-cli download "
            f"{name_or_path}) and copy the cache, or pass a local checkpoint path"
        ) from error


def load_model(
    name_or_path: str | os.PathLike | None = None,
    device: str | torch.device | None = None,
    dtype: torch.dtype | None = None,
):
    """Boot a TransformerBridge for the embedded model (None), a local path or a cached hub name."""
    from transformer_lens.model_bridge import TransformerBridge
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    local = _resolve(name_or_path)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    model = TransformerBridge.boot_transformers(
        local, device=str(pick_device(device)), dtype=dtype or torch.float32
    )
    model.enable_compatibility_mode(disable_warnings=True)
    model.set_use_split_qkv_input(True)
    model.set_use_attn_result(True)
    model.set_use_hook_mlp_in(True)
    model.requires_grad_(False)
    model.eval()
    model.name = DEFAULT_MODEL_NAME if local == str(DEFAULT_MODEL_DIR) else str(name_or_path)
    return model
