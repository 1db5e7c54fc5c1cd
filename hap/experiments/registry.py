"""Discovery backends by name. A new backend is one module with `discover(...)`, a config
dataclass, and one line here.

Every backend: discover(model, graph, task, target_sparsity, seed, config) -> Circuit, run on the
task's train split (validation split for the stopping rule), on the model's device. `config` is
the backend's frozen dataclass; `Backend.__call__` builds it from keyword overrides or
`--set key=value` strings (hap.search.config.resolve) so every setting is typed and recorded.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from hap_baselines import acdc, eap, edge_pruning
from hap_baselines.eap_ig import EAPIGConfig

from hap.errors import UserError
from hap.io.circuit import Circuit
from hap.search import config as configs
from hap.search import hybrid, warm
from hap.search.masks import SearchConfig


@dataclass(frozen=True)
class Backend:
    """A discovery method: its search function, its config class, and whether it learns masks
    step by step (those report `steps` and follow the shared stopping rule)."""

    name: str
    search: Callable[..., Circuit]
    config_class: type
    learns_masks: bool = False

    def config(self, overrides: Mapping[str, Any] | None = None):
        """The typed config with `overrides` applied (one-line ConfigError for a bad key/value)."""
        return configs.resolve(self.config_class, overrides, name=self.name)

    def __call__(
        self, model, graph, task, target_sparsity: float, seed: int = 0, config=None, **overrides
    ) -> Circuit:
        resolved = config if config is not None else self.config(overrides)
        return self.search(model, graph, task, target_sparsity, seed, resolved)


BACKENDS: dict[str, Backend] = {
    b.name: b
    for b in (
        Backend("eap", eap.discover, eap.EAPConfig),
        Backend("eap-ig", eap.discover, EAPIGConfig),
        Backend("ep", edge_pruning.discover, SearchConfig, learns_masks=True),
        Backend("hap", hybrid.discover, hybrid.HAPConfig, learns_masks=True),
        Backend("ep-warm", warm.discover_ep, warm.WarmConfig, learns_masks=True),
        Backend("hap-warm", warm.discover_hap, warm.HAPWarmConfig, learns_masks=True),
        Backend("acdc", acdc.discover, acdc.ACDCConfig),
    )
}


def get_backend(name: str) -> Backend:
    if name not in BACKENDS:
        raise UserError(f"unknown method {name!r}; choose one of {', '.join(BACKENDS)}")
    return BACKENDS[name]


def resolve_settings(methods: list[str], settings: Mapping[str, str]) -> dict[str, Any]:
    """Per method, its typed config with the `settings` that its config has. Every key must
    belong to at least one of `methods`; raises ConfigError (naming the valid keys) otherwise."""
    backends = [get_backend(m) for m in methods]
    valid = {b.name: configs.keys(b.config_class) for b in backends}
    for key in settings:
        if not any(key in v for v in valid.values()):
            every = sorted(set().union(*valid.values()))
            raise configs.ConfigError(
                f"no method among {', '.join(methods)} has a setting {key!r}; valid keys: "
                f"{', '.join(every)}"
            )
    return {
        b.name: b.config({k: v for k, v in settings.items() if k in valid[b.name]})
        for b in backends
    }


def check_validation(configs: Mapping[str, Any], n_val: int) -> None:
    """Refuse, before any compute, a search that would stop by the validation rule with no
    validation prompts."""
    by_rule = [
        name
        for name, config in configs.items()
        if get_backend(name).learns_masks
        and getattr(getattr(config, "search", config), "steps", None) is None
    ]
    if by_rule and n_val < 1:  # n_val: the validation prompts the task will draw
        raise UserError(
            f"{', '.join(by_rule)} {'stops' if len(by_rule) == 1 else 'stop'} by the validation "
            "rule, and there are no validation prompts: give some (--n-val 64, or rows with "
            "split=validation in a task file) or a fixed budget (--set steps=N)"
        )
