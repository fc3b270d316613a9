"""Typed, validated configuration.

Every configurable piece declares a dataclass of its options. :func:`parse`
turns a YAML mapping into that dataclass and fails *before anything runs* on an
unknown key, a missing key, a wrong type or a value outside its allowed set,
with a message naming the key (``estimator.k``) and what is allowed.
Sections with a ``type:`` key are looked up in a :class:`~hil.registry.Registry`.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal, TypeVar, Union

import yaml

from hil.errors import ConfigError, RegistryError
from hil.registry import Registry

C = TypeVar("C")

_TYPE_NAMES = {int: "an integer", float: "a number", bool: "true/false", str: "a string"}


def _describe(tp: Any) -> str:
    if tp in _TYPE_NAMES:
        return _TYPE_NAMES[tp]
    origin = typing.get_origin(tp)
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in typing.get_args(tp))
    if origin in (Union, types.UnionType):
        return " or ".join(_describe(a) for a in typing.get_args(tp))
    if tp is type(None):
        return "null"
    if origin in (list, tuple):
        return "a list"
    if origin is dict or tp is dict:
        return "a mapping"
    if dataclasses.is_dataclass(tp):
        return "a mapping"
    return getattr(tp, "__name__", str(tp))


def check_value(value: Any, tp: Any, where: str) -> Any:
    """Return ``value`` converted to ``tp`` or raise :class:`ConfigError` naming ``where``."""
    if tp is Any:
        return value
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin in (Union, types.UnionType):
        for arg in args:
            try:
                return check_value(value, arg, where)
            except ConfigError:
                pass
        raise ConfigError(f"{where}: expected {_describe(tp)}, got {value!r}")
    if tp is type(None):
        if value is None:
            return None
        raise ConfigError(f"{where}: expected null, got {value!r}")
    if origin is Literal:
        if value in args:
            return value
        raise ConfigError(f"{where}: {value!r} is not allowed; allowed values: {', '.join(map(repr, args))}")
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{where}: expected true/false, got {value!r}")
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise ConfigError(f"{where}: expected an integer, got {value!r}")
    if tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):  # YAML 1.1 reads "1e-3" as a string
            try:
                return float(value)
            except ValueError:
                pass
        raise ConfigError(f"{where}: expected a number, got {value!r}")
    if tp is str:
        if isinstance(value, str):
            return value
        raise ConfigError(f"{where}: expected a string, got {value!r}")
    if origin is list or origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        item_tp = args[0] if args else Any
        items = [check_value(v, item_tp, f"{where}[{i}]") for i, v in enumerate(value)]
        return tuple(items) if origin is tuple else items
    if origin is dict or tp is dict:
        if not isinstance(value, Mapping):
            raise ConfigError(f"{where}: expected a mapping, got {value!r}")
        return dict(value)
    if dataclasses.is_dataclass(tp):
        return parse(tp, value, where)
    raise TypeError(f"config type {tp!r} at {where} is not supported")  # programming error


def parse(cls: type[C], data: Any, where: str) -> C:
    """Build dataclass ``cls`` from a mapping, validating every key."""
    if data is None:
        data = {}
    if not isinstance(data, Mapping):
        raise ConfigError(f"{where}: expected a mapping of options, got {data!r}")
    fields = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = [k for k in data if k not in fields]
    if unknown:
        raise ConfigError(
            f"{where}: unknown key {unknown[0]!r}; allowed keys: {', '.join(sorted(fields))}"
        )
    hints = typing.get_type_hints(cls)
    kwargs = {}
    for name, f in fields.items():
        if name in data:
            kwargs[name] = check_value(data[name], hints[name], f"{where}.{name}")
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            raise ConfigError(f"{where}: missing required key {name!r}")
    try:
        return cls(**kwargs)
    except ConfigError:
        raise
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"{where}: {exc}") from exc


def require(condition: bool, message: str) -> None:
    """For ``__post_init__`` range checks: raise :class:`ConfigError` with ``message``."""
    if not condition:
        raise ConfigError(message)


@dataclasses.dataclass
class TypedSection:
    """A validated ``{type: NAME, ...options}`` section: the registered class and its options."""

    type: str
    cls: Any
    options: Any

    def build(self, **extra: Any) -> Any:
        return self.cls.from_config(self.options, **extra)

    def as_dict(self) -> dict:
        return {"type": self.type, **dataclasses.asdict(self.options)}


def parse_typed(registry: Registry, data: Any, where: str) -> TypedSection:
    """Validate a section with a ``type:`` key against ``registry`` and the type's ``Config``."""
    if not isinstance(data, Mapping):
        raise ConfigError(f"{where}: expected a mapping with a 'type:' key, got {data!r}")
    if "type" not in data:
        raise ConfigError(f"{where}: missing key 'type'; allowed types: {', '.join(registry.names())}")
    name = data["type"]
    try:
        cls = registry.get(name)
    except RegistryError as exc:
        raise ConfigError(f"{where}.type: {exc}") from None
    options = parse(cls.Config, {k: v for k, v in data.items() if k != "type"}, where)
    return TypedSection(name, cls, options)


def load_yaml(path: str | Path) -> dict:
    """Read a YAML mapping, with a clear error for a missing or malformed file."""
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"config file {str(p)!r} does not exist")
    try:
        data = yaml.safe_load(p.read_text())
    except yaml.YAMLError as exc:
        raise ConfigError(f"{p}: not valid YAML: {exc}") from exc
    if not isinstance(data, Mapping):
        raise ConfigError(f"{p}: the top level must be a mapping of sections")
    return dict(data)
