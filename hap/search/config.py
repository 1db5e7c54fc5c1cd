"""Typed backend configs from `--set key=value` pairs.

Every backend's budget and hyperparameters live in one frozen dataclass; the command line and the
sweep change them only through `resolve`, which fills that dataclass and refuses, in one line that
names the valid keys, a key it does not have or a value of the wrong type, before any compute.
Nested dataclasses (HAP's config holds the shared search config) are reached by the field's own
name (`steps`) or its dotted path (`search.steps`).
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from collections.abc import Mapping
from typing import Any, TypeVar

from hap.errors import ConfigError

C = TypeVar("C")


def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def keys(cls: type) -> dict[str, tuple[str, ...]]:
    """Every settable key of config class `cls` -> its path of field names (nested fields by
    their own name and by their dotted path)."""
    out: dict[str, tuple[str, ...]] = {}
    hints = _hints(cls)
    for f in dataclasses.fields(cls):
        kind = hints[f.name]
        if dataclasses.is_dataclass(kind):
            for name, path in keys(kind).items():
                out.setdefault(name, (f.name, *path))
                out[f"{f.name}.{name}"] = (f.name, *path)
        else:
            out[f.name] = (f.name,)
    return out


def _convert(value: Any, kind: Any, key: str, example: Any = None) -> Any:
    """`value` (a string from the command line, or already typed) as type `kind`. A float field
    takes finite values only: inf and nan are refused here, naming the key, since no range check
    in a config's `validate` can be trusted to catch nan (every comparison with it is False).
    `example` (the field's default) is quoted in that refusal."""
    options = typing.get_args(kind) if isinstance(kind, types.UnionType) else (kind,)
    if value is None or (isinstance(value, str) and value.lower() in ("none", "null")):
        if type(None) in options:
            return None
        raise ConfigError(f"{key} cannot be none")
    for option in options:
        if option is type(None):
            continue
        if option is bool:
            if isinstance(value, bool):
                return value
            if str(value).lower() in ("true", "1", "yes"):
                return True
            if str(value).lower() in ("false", "0", "no"):
                return False
            continue
        if option is int and isinstance(value, float) and not value.is_integer():
            continue
        try:
            converted = option(value)
        except (TypeError, ValueError):
            continue
        if option is int and isinstance(value, str) and str(converted) != value.strip():
            continue  # "2.5" is no int
        if option is float and not math.isfinite(converted):
            shown = "" if not isinstance(example, float) else f", e.g. {key}={_show(example)}"
            raise ConfigError(
                f"{key}={value}: must be a finite float (inf and nan are not settings){shown}"
            )
        return converted
    raise ConfigError(f"{key}={value!r} is not a valid {_kind(kind)}")


def _with_path(config: Any, path: tuple[str, ...], value: Any) -> Any:
    head, rest = path[0], path[1:]
    if not rest:
        return dataclasses.replace(config, **{head: value})
    return dataclasses.replace(config, **{head: _with_path(getattr(config, head), rest, value)})


def resolve(cls: type[C], overrides: Mapping[str, Any] | None = None, name: str = "") -> C:
    """`cls()` with `overrides` applied (see `override`)."""
    return override(cls(), overrides, name)


def override(config: C, overrides: Mapping[str, Any] | None = None, name: str = "") -> C:
    """`config` with `overrides` applied, each value converted to its field's type. Raises
    ConfigError naming the valid keys for an unknown key, or the field's type for a bad value."""
    valid = keys(type(config))
    for key, value in (overrides or {}).items():
        if key not in valid:
            label = f"{name} " if name else ""
            raise ConfigError(
                f"unknown {label}setting {key!r}; valid keys: {', '.join(sorted(valid))}"
            )
        path = valid[key]
        owner = config
        for part in path[:-1]:
            owner = getattr(owner, part)
        kind = _hints(type(owner))[path[-1]]
        example = _default(type(owner), path[-1])
        config = _with_path(config, path, _convert(value, kind, key, example))
    if hasattr(config, "validate"):
        config.validate()
    return config


def _default(cls: type, name: str) -> Any:
    """Field `name`'s default in dataclass `cls` (None when it has none or a factory)."""
    default = {f.name: f.default for f in dataclasses.fields(cls)}[name]
    return None if default is dataclasses.MISSING else default


def _show(value: Any) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def _kind(kind: Any) -> str:
    options = typing.get_args(kind) if isinstance(kind, types.UnionType) else (kind,)
    return " or ".join(
        "none" if o is type(None) else getattr(o, "__name__", str(o)) for o in options
    )


def check_ranges(config: Any, rules: Mapping[str, tuple[bool, str]]) -> None:
    """Raise one ConfigError naming every field of `config` out of its range: `rules` maps a
    field to (whether its value is in range, the range in words). A float field that is not
    finite is out of range whatever its rule says. The message gives each bad value, its range,
    its type and the default as an example: `lr=-1: must be > 0 (a float, e.g. 0.3)`. Write
    `ok` so that nan fails it (`lr > 0`, not `not lr <= 0`)."""
    hints = _hints(type(config))
    bad = []
    for key, (ok, rule) in rules.items():
        value = getattr(config, key)
        finite = not isinstance(value, float) or math.isfinite(value)
        if ok and finite:
            continue
        example = _default(type(config), key)
        if not finite:
            rule = f"not finite; {rule}"
        shown = "" if example is None else f", e.g. {_show(example)}"
        article = "an" if _kind(hints[key])[0] in "aeiou" else "a"
        bad.append(f"{key}={_show(value)}: {rule} ({article} {_kind(hints[key])}{shown})")
    if bad:
        raise ConfigError("; ".join(bad))


def parse_settings(pairs: list[str] | None) -> dict[str, str]:
    """['steps=100', 'lr=0.1'] -> {'steps': '100', 'lr': '0.1'}; one-line error otherwise."""
    settings: dict[str, str] = {}
    for pair in pairs or []:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--set takes key=value, got {pair!r} (e.g. --set steps=100)")
        settings[key.strip()] = value.strip()
    return settings
