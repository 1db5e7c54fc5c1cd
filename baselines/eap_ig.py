"""EAP-IG (Hanna et al. 2024): EAP with gradients averaged over input-embedding interpolations."""

from __future__ import annotations

from dataclasses import dataclass

from hap_baselines.eap import EAPConfig

from hap.errors import ConfigError


@dataclass(frozen=True)
class EAPIGConfig(EAPConfig):
    """EAP's config with its budget, the number of interpolation points, set to 5 (the EAP-IG
    paper's smallest recommended value)."""

    ig_steps: int = 5

    def validate(self) -> None:
        super().validate()
        if self.ig_steps < 1:
            raise ConfigError("eap-ig needs ig_steps >= 1 (ig_steps=0 is plain eap)")
