"""Typed configuration: dataclasses loaded from YAML, validated key by key.

Every config section in the project is a plain dataclass. `load_config` reads a YAML file into
one, applies `key=value` overrides from the command line, and fails with one clear line naming
the file and the key when something is unknown or has the wrong type. No global state: callers
pass config objects down explicitly.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar, Union, get_args, get_origin, get_type_hints

import yaml

T = TypeVar("T")


class ConfigError(ValueError):
    """A configuration file or override that cannot be turned into the typed config."""


def load_config(path: str | Path, cls: type[T], overrides: Sequence[str] = ()) -> T:
    """Read `path` (YAML) into dataclass `cls`, then apply `key.sub=value` overrides."""
    raw = read_yaml(path)
    for item in overrides:
        apply_override(raw, item, source=str(path))
    return from_dict(cls, raw, source=str(path))


def read_yaml(path: str | Path) -> dict[str, Any]:
    """A YAML file whose top level is a mapping, or a ConfigError naming the file."""
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except FileNotFoundError as err:
        raise ConfigError(f"{path}: config file not found") from err
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: not valid YAML ({err})") from err
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: top level must be a mapping, got {type(raw).__name__}")
    return raw


def apply_override(raw: dict[str, Any], item: str, source: str = "<overrides>") -> None:
    """Set `a.b.c=value` in a nested dict; the value is parsed as YAML (numbers, lists, null)."""
    key, sep, value = item.partition("=")
    if not sep or not key:
        raise ConfigError(f"{source}: override {item!r} is not of the form key=value")
    *parents, leaf = key.strip().split(".")
    node = raw
    for part in parents:
        child = node.get(part)
        if child is None:
            child = node[part] = {}
        if not isinstance(child, dict):
            raise ConfigError(f"{source}: override {item!r}: {part!r} is not a section")
        node = child
    node[leaf] = yaml.safe_load(value)


def from_dict(cls: type[T], data: Mapping[str, Any], source: str = "<dict>", prefix: str = "") -> T:
    """Build dataclass `cls` from a mapping, checking every key and value type."""
    if not isinstance(data, Mapping):
        raise ConfigError(f"{source}: {prefix or 'config'} must be a mapping, got {type(data).__name__}")
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    hints = get_type_hints(cls)
    unknown = sorted(set(data) - set(fields))
    if unknown:
        where = f"{prefix}." if prefix else ""
        raise ConfigError(
            f"{source}: unknown key {where}{unknown[0]!r} for {cls.__name__}"
            f" (known: {', '.join(sorted(fields))})"
        )
    kwargs = {}
    for name, value in data.items():
        key = f"{prefix}.{name}" if prefix else name
        kwargs[name] = _coerce(hints[name], value, source, key)
    try:
        return cls(**kwargs)
    except TypeError as err:
        raise ConfigError(f"{source}: {prefix or cls.__name__}: {err}") from err
    except ValueError as err:  # __post_init__ validation
        raise ConfigError(f"{source}: {prefix or cls.__name__}: {err}") from err


def to_dict(config: Any) -> dict[str, Any]:
    """Plain-data view of a config dataclass (for YAML/JSON dumps and summaries)."""
    return dataclasses.asdict(config)


def save_config(config: Any, path: str | Path) -> None:
    Path(path).write_text(yaml.safe_dump(to_dict(config), sort_keys=False, allow_unicode=True), "utf-8")


def _coerce(hint: Any, value: Any, source: str, key: str) -> Any:
    origin = get_origin(hint)
    if hint is Any:
        return value
    if origin in (Union, types.UnionType):
        args = get_args(hint)
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in (a for a in args if a is not type(None)):
            try:
                return _coerce(arg, value, source, key)
            except ConfigError as err:
                errors.append(str(err))
        raise ConfigError(
            errors[0] if len(errors) == 1 else f"{source}: {key}: {value!r} does not match {hint}"
        )
    if origin is typing.Literal:
        if value not in get_args(hint):
            raise ConfigError(f"{source}: {key}: {value!r} is not one of {list(get_args(hint))}")
        return value
    if dataclasses.is_dataclass(hint):
        return from_dict(hint, value or {}, source, key)
    if origin in (list, tuple, Sequence):
        if not isinstance(value, list | tuple):
            raise ConfigError(f"{source}: {key}: expected a list, got {value!r}")
        (item_hint, *_) = get_args(hint) or (Any,)
        items = [_coerce(item_hint, v, source, f"{key}[{i}]") for i, v in enumerate(value)]
        return tuple(items) if origin is tuple else items
    if origin in (dict, Mapping):
        if not isinstance(value, Mapping):
            raise ConfigError(f"{source}: {key}: expected a mapping, got {value!r}")
        return dict(value)
    if hint is float and isinstance(value, int | float | str) and not isinstance(value, bool):
        try:  # YAML 1.1 reads "3e-4" (no dot) as a string
            return float(value)
        except ValueError:
            pass
    if hint in (str, Path) and isinstance(value, str):
        return hint(value)
    if isinstance(hint, type) and isinstance(value, hint) and not (hint is int and isinstance(value, bool)):
        return value
    raise ConfigError(f"{source}: {key}: expected {getattr(hint, '__name__', hint)}, got {value!r}")
