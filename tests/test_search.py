"""The shared search: typed configs from --set, one warm-up formula, the validation stopping rule."""

import pytest
import torch

from hap.experiments.registry import get_backend, resolve_settings
from hap.search.config import ConfigError, keys, parse_settings, resolve
from hap.search.hybrid import HAPConfig
from hap.search.masks import SearchConfig, rule_fires, warmup_steps


def test_settings_fill_the_typed_config_nested_fields_by_name_or_path():
    config = resolve(HAPConfig, {"steps": "50", "search.lr": "0.1", "candidate_multiple": "3"})
    assert config.search.steps == 50 and isinstance(config.search.steps, int)
    assert config.search.lr == 0.1 and config.candidate_multiple == 3.0
    assert resolve(SearchConfig, {"steps": "none"}).steps is None
    assert resolve(SearchConfig, {"steps": 7}).steps == 7
    assert "search.steps" in keys(HAPConfig) and "steps" in keys(HAPConfig)
    assert parse_settings(["steps=100", "lr = 0.5"]) == {"steps": "100", "lr": "0.5"}


@pytest.mark.parametrize(
    "settings, message",
    [
        ({"stepz": "1"}, "unknown hap setting 'stepz'; valid keys: .*candidate_multiple"),
        ({"steps": "2.5"}, r"steps='2.5' is not a valid int or none"),
        ({"lr": "fast"}, "lr='fast' is not a valid float"),
        ({"steps": "0"}, "must be positive: steps=0"),
        ({"ablation": "blur"}, "ablation='blur': choose one of corrupted, mean, zero"),
    ],
)
def test_bad_settings_are_one_line_errors(settings, message):
    with pytest.raises(ValueError, match=message):
        get_backend("hap").config(settings)


def test_sweep_settings_go_to_the_methods_that_have_them():
    configs = resolve_settings(["eap", "ep", "hap"], {"steps": "40", "batch_size": "16"})
    assert configs["ep"].steps == 40 and configs["hap"].search.steps == 40
    assert configs["eap"].batch_size == 16 and configs["hap"].search.batch_size == 16
    with pytest.raises(ConfigError, match="no method among eap, eap-ig has a setting 'steps'"):
        resolve_settings(["eap", "eap-ig"], {"steps": "40"})
    with pytest.raises(ConfigError, match="--set takes key=value"):
        parse_settings(["steps"])


def test_one_warmup_length_for_every_start():
    config = SearchConfig()
    assert warmup_steps(config, 0.94) == round(80 * 0.94)
    assert warmup_steps(config, 0.98) == round(80 * 0.98)
    assert warmup_steps(SearchConfig(min_warmup=100), 0.94) == 100  # the floor
    assert warmup_steps(SearchConfig(steps=100), 0.94) == 50  # a fixed budget: half at most
    assert warmup_steps(SearchConfig(warmup=7), 0.94) == 7


def test_rule_fires_after_patience_evaluations_without_relative_improvement():
    assert not rule_fires([1.0, 0.9, 0.8], patience=2, rel_tol=0.05)
    assert rule_fires([1.0, 0.9, 0.89, 0.88], patience=2, rel_tol=0.05)  # < 5% twice
    assert not rule_fires([1.0, 0.9, 0.89, 0.80], patience=2, rel_tol=0.05)  # improved again
    assert rule_fires([0.5, 0.7, 0.6], patience=2, rel_tol=0.0)  # worse counts as no gain
    assert not rule_fires([], patience=1, rel_tol=0.0)


def test_the_rule_stops_ep_on_validation_kl(model, graph, ioi):
    circuit = get_backend("ep")(model, graph, ioi, 0.9, seed=3, eval_every=5, max_steps=300)
    history = circuit.details["val_history"]
    assert circuit.details["stopped"] == "rule" and circuit.steps < 300
    assert circuit.steps == history[-1][0] and circuit.config["steps"] is None
    assert history[0][0] == circuit.details["warmup"]
    assert all(b[0] - a[0] == 5 for a, b in zip(history, history[1:]))
    assert abs(history[-1][2] - 0.9) <= 0.1 * (1 - 0.9)  # stopped near the target
    assert rule_fires([kl for _, kl, _ in history], 2, 0.1)
    assert not any(
        rule_fires([kl for _, kl, _ in history[:i]], 2, 0.1)
        and abs(history[i - 1][2] - 0.9) <= 0.01
        for i in range(1, len(history))
    )  # and not earlier


def test_the_rule_needs_a_validation_split(model, graph, ioi):
    no_val = type(ioi)(ioi.name, ioi.train, ioi.val.subset(slice(0, 0)), ioi.test, ioi.seed)
    with pytest.raises(ValueError, match="validation split.*--set steps=N"):
        get_backend("hap")(model, graph, no_val, 0.9)
    fixed = get_backend("hap")(model, graph, no_val, 0.9, steps=3)
    assert fixed.steps == 3 and fixed.details["val_history"] == []
    assert torch.equal(fixed.mask, get_backend("hap")(model, graph, ioi, 0.9, steps=3).mask)
