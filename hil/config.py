"""Typed, validated configuration.

Every configurable piece declares a dataclass of its options. :func:`parse`
turns a YAML mapping into that dataclass and fails *before anything runs* on an
unknown key, a missing key, a wrong type, a non-finite number or a value outside
its declared range, with a message naming the key as the user wrote it, down to
list indices (``blackbox.wrappers[3].read_noise_e``), and what is allowed.
Sections with a ``type:`` key are looked up in a :class:`~hil.registry.Registry`.

A numeric field declares its range once, at the field, with :class:`Range` in
``typing.Annotated`` (or one of the aliases below)::

    @dataclass
    class Config:
        lr: PositiveFloat = 1e-3                          # > 0, finite
        momentum: Annotated[float, Range(ge=0, lt=1)] = 0.9
        hidden: list[PositiveInt] = field(default_factory=lambda: [64, 64])
        timeout_s: Annotated[float, Range(gt=0, finite=False)] = 10.0   # .inf allowed

Every float is finite unless its field says ``finite=False``. Checks that
involve two fields stay in ``__post_init__`` and use :func:`check`, which names
the field; :func:`parse` puts the section's path in front of it.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar, Union

import yaml

from hil.errors import ConfigError, RegistryError
from hil.registry import Registry

C = TypeVar("C")


@dataclasses.dataclass(frozen=True)
class Range:
    """The allowed values of a numeric config field, declared at the field (``Annotated[float, Range(gt=0)]``).

    ``ge``/``gt``/``le``/``lt``: inclusive and exclusive bounds (``None``: unbounded on that side);
    ``finite``: whether a float must be finite (default: it must; ``.inf`` and ``.nan`` are rejected).
    """

    ge: float | None = None
    gt: float | None = None
    le: float | None = None
    lt: float | None = None
    finite: bool = True

    def describe(self) -> str:
        parts = [f"{op} {_number(bound)}" for op, bound in ((">=", self.ge), (">", self.gt), ("<=", self.le),
                                                             ("<", self.lt)) if bound is not None]
        return " and ".join(parts) or "any number"

    def check(self, value: Any, where: str) -> None:
        if value is None or isinstance(value, bool) or not isinstance(value, (int, float)):
            return
        if isinstance(value, float) and math.isnan(value):
            raise ConfigError(f"{where}: expected a number, got {value!r}")
        ok = ((self.ge is None or value >= self.ge) and (self.gt is None or value > self.gt)
              and (self.le is None or value <= self.le) and (self.lt is None or value < self.lt))
        if not ok:
            raise ConfigError(f"{where}: must be {self.describe()}, got {value!r}")


def _number(value: float) -> str:
    """A bound as a person writes it: the shortest form (1e+06, 0.5) unless that loses digits (4294967295)."""
    short = f"{value:g}"
    if float(short) != float(value) and float(value).is_integer() and abs(value) < 1e16:
        return str(int(value))
    return short


PositiveFloat = Annotated[float, Range(gt=0)]
NonNegativeFloat = Annotated[float, Range(ge=0)]
#: a fraction in [0, 1]
UnitFloat = Annotated[float, Range(ge=0, le=1)]
PositiveInt = Annotated[int, Range(ge=1)]
NonNegativeInt = Annotated[int, Range(ge=0)]
#: a float that may be ``.inf`` (e.g. "no limit"), never NaN
PositiveFloatOrInf = Annotated[float, Range(gt=0, finite=False)]
#: a random seed: numpy, torch, cma and nevergrad all take [0, 2**32)
Seed = Annotated[int, Range(ge=0, le=2**32 - 1)]
#: any finite float (an offset, a coordinate): the range is declared, and it is "all finite numbers"
FiniteFloat = Annotated[float, Range()]
#: any integer (a seed may be any integer numpy accepts: use NonNegativeInt for those)
AnyInt = Annotated[int, Range()]


def undeclared_numbers(cls: type) -> list[str]:
    """The fields of dataclass ``cls`` (recursively, through nested dataclasses) holding an int or a float, alone,
    optional or in a list, that declare no :class:`Range`: the conformance check that every number is ranged."""
    out: list[str] = []
    hints = typing.get_type_hints(cls, include_extras=True)
    for f in dataclasses.fields(cls):  # type: ignore[arg-type]
        out += [f"{f.name}{suffix}" for suffix in _unranged(hints[f.name])]
    return out


def _unranged(tp: Any, suffix: str = "") -> list[str]:
    origin = typing.get_origin(tp)
    if origin is Annotated:
        if any(isinstance(m, Range) for m in tp.__metadata__):
            return []
        return _unranged(typing.get_args(tp)[0], suffix)
    if tp in (int, float):
        return [suffix]
    if origin in (Union, types.UnionType):
        return [s for a in typing.get_args(tp) for s in _unranged(a, suffix)]
    if origin in (list, tuple):
        return [s for a in typing.get_args(tp) if a is not Ellipsis for s in _unranged(a, suffix + "[]")]
    if dataclasses.is_dataclass(tp):
        return [f"{suffix}.{name}" for name in undeclared_numbers(tp)]
    return []


class FieldError(ConfigError):
    """A ``__post_init__`` check failed for one field; :func:`parse` prefixes the section's path."""

    def __init__(self, key: str, message: str) -> None:
        self.key = key
        self.detail = message
        super().__init__(f"{key}: {message}" if key else message)


def check(condition: bool, key: str, message: str) -> None:
    """For checks in ``__post_init__`` that involve more than one field: raise :class:`FieldError` naming ``key``
    (a field of this dataclass, optionally with an index or a sub-key: ``"blocks[1]"``, ``"slm_gamma.levels"``);
    :func:`parse` turns it into ``section.key: message``."""
    if not condition:
        raise FieldError(key, message)

_TYPE_NAMES = {int: "an integer", float: "a number", bool: "true/false", str: "a string"}


def _describe(tp: Any) -> str:
    if tp in _TYPE_NAMES:
        return _TYPE_NAMES[tp]
    origin = typing.get_origin(tp)
    if origin is Annotated:
        ranges = [m for m in tp.__metadata__ if isinstance(m, Range)]
        base = _describe(typing.get_args(tp)[0])
        bounds = " and ".join(r.describe() for r in ranges if r.describe() != "any number")
        return f"{base} {bounds}" if bounds else base
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


def check_value(value: Any, tp: Any, where: str, *, finite: bool = True) -> Any:
    """Return ``value`` converted to ``tp`` or raise :class:`ConfigError` naming ``where``.

    ``Annotated[T, Range(...)]`` checks the range after the type; floats must be finite unless ``finite=False``.
    """
    if tp is Any:
        return value
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin is Annotated:
        ranges = [m for m in tp.__metadata__ if isinstance(m, Range)]
        out = check_value(value, args[0], where, finite=all(r.finite for r in ranges))
        for r in ranges:
            r.check(out, where)
        return out
    if origin in (Union, types.UnionType):
        errors = []
        for arg in args:
            try:
                return check_value(value, arg, where, finite=finite)
            except ConfigError as exc:
                errors.append(exc)
        # one alternative of the right kind rejected the value (a range, a finite number): say why
        kinds = [a for a in args if _accepts_kind(value, a)]
        if len(kinds) == 1:
            raise errors[list(args).index(kinds[0])]
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
        out: float | None = None
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            out = float(value)
        elif isinstance(value, str):  # YAML 1.1 reads "1e-3" as a string
            try:
                out = float(value)
            except ValueError:
                pass
        if out is None:
            raise ConfigError(f"{where}: expected a number, got {value!r}")
        if math.isnan(out) or (finite and math.isinf(out)):
            raise ConfigError(f"{where}: expected a finite number, got {value!r}")
        return out
    if tp is str:
        if isinstance(value, str):
            return value
        raise ConfigError(f"{where}: expected a string, got {value!r}")
    if origin is list or origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        item_tp = args[0] if args else Any
        items = [check_value(v, item_tp, f"{where}[{i}]", finite=finite) for i, v in enumerate(value)]
        return tuple(items) if origin is tuple else items
    if origin is dict or tp is dict:
        if not isinstance(value, Mapping):
            raise ConfigError(f"{where}: expected a mapping, got {value!r}")
        for key, item in value.items():
            _check_finite_tree(item, f"{where}.{key}")
        return dict(value)
    if dataclasses.is_dataclass(tp):
        return parse(tp, value, where)
    raise TypeError(f"config type {tp!r} at {where} is not supported")  # programming error


def _accepts_kind(value: Any, tp: Any) -> bool:
    """Whether ``value`` is of ``tp``'s kind (number, string, list, ...), ignoring ranges and finiteness."""
    base = typing.get_args(tp)[0] if typing.get_origin(tp) is Annotated else tp
    origin = typing.get_origin(base)
    if base is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if base is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if origin in (list, tuple):
        return isinstance(value, (list, tuple))
    if base is type(None):
        return value is None
    if base is str:
        return isinstance(value, str)
    if base is bool:
        return isinstance(value, bool)
    if origin is dict or base is dict or dataclasses.is_dataclass(base):
        return isinstance(value, Mapping)
    return False


def _check_finite_tree(value: Any, where: str) -> None:
    """A free-form mapping (a driver's init arguments) holds no NaN or infinite number anywhere."""
    if isinstance(value, float) and not math.isfinite(value):
        raise ConfigError(f"{where}: expected a finite number, got {value!r}")
    if isinstance(value, Mapping):
        for key, item in value.items():
            _check_finite_tree(item, f"{where}.{key}")
    elif isinstance(value, (list, tuple)):
        for i, item in enumerate(value):
            _check_finite_tree(item, f"{where}[{i}]")


def join(where: str, key: str) -> str:
    """The path of ``key`` inside the section at ``where`` (``""``: the file's top level)."""
    return f"{where}.{key}" if where else key


def parse(cls: type[C], data: Any, where: str) -> C:
    """Build dataclass ``cls`` from a mapping, validating every key; ``where`` is the section's path as the user
    wrote it (``blackbox.wrappers[2]``; ``""`` for a whole file's top level)."""
    if data is None:
        data = {}
    if not isinstance(data, Mapping):
        raise ConfigError(f"{where or 'config'}: expected a mapping of options, got {data!r}")
    fields = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = [k for k in data if k not in fields]
    if unknown:
        raise ConfigError(
            f"{join(where, unknown[0])}: unknown key; allowed keys: {', '.join(sorted(fields))}"
        )
    hints = typing.get_type_hints(cls, include_extras=True)
    kwargs = {}
    for name, f in fields.items():
        if name in data:
            kwargs[name] = check_value(data[name], hints[name], join(where, name))
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            raise ConfigError(f"{where or 'config'}: missing required key {name!r}")
    try:
        return cls(**kwargs)
    except FieldError as exc:
        path = join(where, exc.key) if exc.key else (where or "config")
        raise ConfigError(f"{path}: {exc.detail}") from None
    except ConfigError:
        raise
    except (ValueError, TypeError, OverflowError) as exc:
        raise ConfigError(f"{where or 'config'}: {exc}") from exc


def require(condition: bool, message: str) -> None:
    """For ``__post_init__`` range checks: raise :class:`ConfigError` with ``message``."""
    if not condition:
        raise ConfigError(message)


@dataclasses.dataclass
class TypedSection:
    """A validated ``{type: NAME, ...options}`` section: the type's options, and its registry, which imports the
    implementation (:attr:`cls`) only when the section is built."""

    type: str
    registry: Registry
    options: Any

    @property
    def cls(self) -> Any:
        return self.registry.get(self.type)

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
    if not isinstance(name, str):
        raise ConfigError(f"{where}.type: expected a type name (a string), got {name!r}; allowed types: "
                          f"{', '.join(registry.names())}")
    try:
        config = registry.config(name)
    except RegistryError as exc:
        raise ConfigError(f"{where}.type: {exc}") from None
    options = parse(config, {k: v for k, v in data.items() if k != "type"}, where)
    return TypedSection(name, registry, options)


class _StrictLoader(yaml.SafeLoader):
    """YAML's safe loader, refusing a key written twice in one mapping (plain YAML keeps the last silently)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict:
        seen: dict[Any, Any] = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            try:
                hash(key)
            except TypeError:
                raise yaml.constructor.ConstructorError(
                    None, None, f"a mapping key must be a scalar, got {key!r}", key_node.start_mark) from None
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    f"the mapping starting {seen[key]}", None,
                    f"key {key!r} is written twice (line {seen[key].line + 1} and line "
                    f"{key_node.start_mark.line + 1}); keep one", key_node.start_mark)
            seen[key] = key_node.start_mark
        return super().construct_mapping(node, deep=deep)


_StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _StrictLoader.construct_mapping)


def load_yaml_text(text: str, name: str) -> Any:
    """Parse YAML ``text`` strictly (no duplicate keys); errors name ``name`` (the file) and the line."""
    loader = _StrictLoader(text)
    loader.name = name
    try:
        return loader.get_single_data()
    except yaml.YAMLError as exc:
        raise ConfigError(f"{name}: not valid YAML: {exc}") from None
    finally:
        loader.dispose()


def load_yaml(path: str | Path) -> dict:
    """Read a YAML mapping, with a clear error for a missing, unreadable or malformed file or a duplicate key."""
    p = Path(path)
    if p.is_dir():
        raise ConfigError(f"{str(p)!r} is a directory, not a config file; give a YAML file in it")
    if not p.is_file():
        raise ConfigError(f"config file {str(p)!r} does not exist")
    try:
        text = p.read_bytes().decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{p}: not a UTF-8 text file (byte {exc.start}: {exc.reason}); save it as UTF-8") from None
    except OSError as exc:
        raise ConfigError(f"{p}: cannot read: {exc.strerror}") from None
    data = load_yaml_text(text, str(p))
    if not isinstance(data, Mapping):
        raise ConfigError(f"{p}: the top level must be a mapping of sections")
    return dict(data)
