"""Load a model as a TransformerBridge ready for edge-level patching.

`load_model()` boots the embedded default model (committed in `hap/models/assets/default`); a local path
boots that HF checkpoint; a hub name (e.g. "gpt2") boots from the user's HF cache, offline. The
bridge comes back in compatibility mode with the hooks the graph needs switched on: split q/k/v
inputs, per-head results and the MLP-input hook. Parameters are frozen: every method here takes
gradients with respect to activations or masks, never weights.
"""

from __future__ import annotations

import copy
import json
import os
import sys
from contextlib import contextmanager
from pathlib import Path

import torch

from hap.engine.graph import UnsupportedArchitecture
from hap.errors import UserError
from hap.models.zoo import REAL_MODELS, ModelNotFoundError, ensure_checkpoint

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
        raise UserError(f"unknown precision {precision!r}; choose one of {', '.join(PRECISIONS)}")
    torch.backends.cuda.matmul.allow_tf32 = precision == "tf32"
    torch.backends.cudnn.allow_tf32 = precision == "tf32"
    return torch.bfloat16 if precision == "bf16" else torch.float32


DEVICE_CHOICES = "cpu, cuda, cuda:N (N a GPU index) or mps"


def pick_device(device: str | torch.device | None = None) -> torch.device:
    """CUDA when available, else CPU; an explicit choice wins, and must be one of
    DEVICE_CHOICES that this machine has (a one-line UserError otherwise)."""
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if isinstance(device, torch.device):
        chosen = device
    else:
        try:
            chosen = torch.device(str(device).strip().lower())
        except RuntimeError as error:  # torch's refusal of a malformed device string
            raise UserError(
                f"--device {str(device)!r} is not a device: choose {DEVICE_CHOICES}"
            ) from error
    if chosen.type not in ("cpu", "cuda", "mps"):
        raise UserError(f"--device {str(device)!r}: hap runs on {DEVICE_CHOICES}")
    if chosen.type == "cuda" and not torch.cuda.is_available():
        raise UserError(f"device '{chosen}' requested but CUDA is not available; use --device cpu")
    if chosen.type == "cuda" and chosen.index is not None:
        count = torch.cuda.device_count()
        if chosen.index >= count:
            raise UserError(
                f"--device {chosen}: this machine has {count} CUDA device(s), "
                f"cuda:0 to cuda:{count - 1}"
            )
    if chosen.type == "mps" and not torch.backends.mps.is_available():
        raise UserError(f"device '{chosen}' requested but MPS is not available; use --device cpu")
    return chosen


WEIGHT_SUFFIXES = (".safetensors", ".bin")


def check_checkpoint(folder: str | os.PathLike) -> None:
    """Refuse, in one line naming the folder and what is missing, a checkpoint folder that
    cannot boot: config.json unreadable, not a JSON object, without a model_type transformers
    knows (or with malformed architectures), or no weights file (*.safetensors / *.bin).
    Checked before transformers reads the folder, whose own errors are tracebacks."""
    folder = Path(folder)
    config_file = folder / "config.json"
    hint = "point --model at a Hugging Face checkpoint folder (save_pretrained's output)"
    try:
        config = json.loads(config_file.read_text())
    except OSError as error:
        reason = error.strerror or type(error).__name__
        raise UserError(f"model folder {folder}: config.json cannot be read ({reason})") from error
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise UserError(
            f"model folder {folder}: config.json is not valid JSON ({error}); {hint}"
        ) from error
    if not isinstance(config, dict):
        raise UserError(
            f"model folder {folder}: config.json holds a {type(config).__name__}, not the "
            f"object of a model config; {hint}"
        )
    model_type = config.get("model_type")
    if not isinstance(model_type, str) or not model_type:
        raise UserError(
            f'model folder {folder}: config.json has no model_type (e.g. "gpt2", "llama"), '
            f"which transformers needs to build the model; {hint}"
        )
    from transformers.models.auto.configuration_auto import CONFIG_MAPPING_NAMES

    if model_type not in CONFIG_MAPPING_NAMES:
        raise UserError(
            f"model folder {folder}: config.json's model_type {model_type!r} is not one "
            "this transformers version knows (e.g. gpt2, llama, qwen2, gemma2)"
        )
    architectures = config.get("architectures")
    if architectures is not None and not (
        isinstance(architectures, list) and all(isinstance(a, str) for a in architectures)
    ):
        raise UserError(
            f"model folder {folder}: config.json's architectures must be a list of class "
            f'names (e.g. ["GPT2LMHeadModel"]), got {architectures!r:.60}'
        )
    if not any(f.name.endswith(WEIGHT_SUFFIXES) for f in folder.iterdir()):
        raise UserError(
            f"model folder {folder} has no weights (*.safetensors or *.bin beside config.json); "
            f"{hint}"
        )


def _resolve(name_or_path: str | os.PathLike | None) -> str:
    if name_or_path is None or str(name_or_path) == DEFAULT_MODEL_NAME:
        return str(DEFAULT_MODEL_DIR)
    if str(name_or_path) in REAL_MODELS:
        return str(ensure_checkpoint(REAL_MODELS[str(name_or_path)], log=_log))
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


def _log(message: str) -> None:
    print(f"hap: {message}", file=sys.stderr, flush=True)


def ungroup_kv_heads(hf_model):
    """`hf_model` with grouped-query attention rewritten as the same function with one K and V
    projection per query head (each KV head's weights repeated for the query heads that share
    it), or `hf_model` itself when it has no grouping. This is MIB's and TransformerLens's
    `ungroup_grouped_query_attention` convention: the graph then holds k and v receivers per
    query head, and masking one query head's k/v input changes that head alone, exactly."""
    config = hf_model.config
    n_heads = config.num_attention_heads
    n_kv = getattr(config, "num_key_value_heads", None) or n_heads
    if n_kv == n_heads:
        return hf_model
    group = n_heads // n_kv
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // n_heads
    state = hf_model.state_dict()
    if not any(key.endswith("self_attn.k_proj.weight") for key in state):
        raise UnsupportedArchitecture(
            f"{type(hf_model).__name__} has grouped-query attention ({n_kv} KV heads for "
            f"{n_heads} query heads) behind a fused q/k/v projection; the engine ungroups "
            "separate k_proj / v_proj weights only"
        )
    for key, value in state.items():
        if key.endswith(
            (
                "self_attn.k_proj.weight",
                "self_attn.v_proj.weight",
                "self_attn.k_proj.bias",
                "self_attn.v_proj.bias",
            )
        ):
            rest = value.shape[1:]
            per_head = value.reshape(n_kv, head_dim, *rest).repeat_interleave(group, 0)
            state[key] = per_head.reshape(n_heads * head_dim, *rest)
    ungrouped = copy.deepcopy(config)
    ungrouped.num_key_value_heads = n_heads
    model = type(hf_model)(ungrouped).to(next(hf_model.parameters()).dtype)
    model.load_state_dict(state, strict=True)
    return model.eval()


def model_name(name_or_path: str | os.PathLike | None) -> str:
    """The name results record for a model, known without loading it (a sweep's driver keys its
    rows by it while workers load the model)."""
    if name_or_path is None or str(name_or_path) in (DEFAULT_MODEL_NAME, str(DEFAULT_MODEL_DIR)):
        return DEFAULT_MODEL_NAME
    return str(name_or_path)


def load_model(
    name_or_path: str | os.PathLike | None = None,
    device: str | torch.device | None = None,
    dtype: torch.dtype | None = None,
):
    """Boot a TransformerBridge for the embedded model (None), a named real model (`hap models`),
    a local path or a cached hub name. A grouped-query checkpoint is ungrouped first
    (`ungroup_kv_heads`); `model.kv_heads` keeps its original KV head count."""
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    pick_device(device)  # a bad --device fails before any checkpoint is read or converted
    local = _resolve(name_or_path)
    check_checkpoint(local)
    with _offline():
        model = _boot(local, device, dtype or torch.float32)
    model.name = model_name(name_or_path)
    spec = REAL_MODELS.get(str(name_or_path))
    # The BOS convention of tasks built for this model: explicit for named real models; the
    # tokenizer's BOS (when it has one) otherwise, as the embedded model was trained.
    model.prepend_bos = spec.prepend_bos if spec else model.tokenizer.bos_token_id is not None
    return model


@contextmanager
def _offline():
    """The hub clients' offline switches, set only while a model loads (this machine has no
    network; a user's own settings are left as they were afterwards)."""
    keys = ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")
    saved = {key: os.environ.get(key) for key in keys}
    for key in keys:
        os.environ.setdefault(key, "1")
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def _declared_tokenizer(local: str):
    """The folder's tokenizer as its tokenizer_config.json declares it when that is the generic
    fast tokenizer, else None (the bridge's own choice). transformers' AutoTokenizer otherwise
    picks the model type's tokenizer class (e.g. Qwen2Tokenizer), whose own pre-tokenizer turns
    a generic tokenizer's words into unknown tokens."""
    try:
        declared = json.loads((Path(local) / "tokenizer_config.json").read_text())
    except (OSError, json.JSONDecodeError):
        return None
    if (
        not isinstance(declared, dict)
        or declared.get("tokenizer_class") != "PreTrainedTokenizerFast"
    ):
        return None
    from transformers import PreTrainedTokenizerFast

    return PreTrainedTokenizerFast.from_pretrained(local)


def _boot(local: str, device, dtype: torch.dtype):
    """The bridge of checkpoint folder `local`, with the hooks the graph needs switched on."""
    from transformer_lens.model_bridge import TransformerBridge
    from transformers import AutoConfig, AutoModelForCausalLM

    config = AutoConfig.from_pretrained(local)
    n_heads = getattr(config, "num_attention_heads", None)
    kv_heads = getattr(config, "num_key_value_heads", None) or n_heads
    hf_model = None
    if n_heads and kv_heads != n_heads:
        loaded = AutoModelForCausalLM.from_pretrained(local, dtype=dtype)
        hf_model = ungroup_kv_heads(loaded).to(pick_device(device))
    declared = _declared_tokenizer(local)
    model = TransformerBridge.boot_transformers(
        local, device=str(pick_device(device)), dtype=dtype, hf_model=hf_model, tokenizer=declared
    )
    if declared is not None and type(model.tokenizer) is not type(declared):
        # The bridge's BOS wiring re-loads the tokenizer through AutoTokenizer, by model type,
        # and its property setter would again: keep the declared one as it is.
        model._tokenizer = declared
    model.enable_compatibility_mode(disable_warnings=True)
    try:
        model.set_use_split_qkv_input(True)
        model.set_use_attn_result(True)
        model.set_use_hook_mlp_in(True)
    except NotImplementedError as error:  # the bridge's refusal: no hook before q/k/v
        architecture = ", ".join(getattr(config, "architectures", None) or [config.model_type])
        raise UnsupportedArchitecture(
            f"{architecture}: TransformerLens's bridge offers no per-head q/k/v input hooks for "
            "this architecture (its attention projects q, k and v in one opaque module), so "
            "edges into q/k/v cannot be patched"
        ) from error
    model.requires_grad_(False)
    model.eval()
    model.kv_heads = kv_heads
    return model
