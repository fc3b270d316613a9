"""Mutation test over every shipped config: each mutation is invalid, and `hil validate` must refuse it with a clean
error (no traceback) that names the mutated key's path as the user wrote it.

Mutations: every number made non-finite (inf, -inf, nan) and of the wrong type; every number of a field that
declares a range (hil.config.Range) moved just outside it; every string, boolean and list given a value of the
wrong type; an unknown key in every mapping; every key written twice; every ``type:`` made a list, a mapping, a
number and an unknown name; and broken files (not UTF-8, not YAML, empty, a list, a directory).
"""

from __future__ import annotations

import copy
import dataclasses
import math
import re
import types
import typing
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any

import pytest
import yaml

from hil.cli import main
from hil.config import Range
from hil.optim.loop import LoopConfig
from hil.registry import BLACKBOXES, ESTIMATORS, OBJECTIVES, OPTIMIZERS, WRAPPERS

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = sorted((ROOT / "configs").glob("*.yaml"))
FREE = object()  # a free-form mapping (a driver's init arguments): only finiteness is checked inside


def _validate(path: Path, capsys) -> tuple[int, str]:
    """``hil validate PATH`` in this process: (exit code, stderr). Anything but a clean HilError propagates
    out of ``main`` as a traceback and fails the test."""
    code = main(["validate", str(path)])
    return code, capsys.readouterr().err


# -- what each path of a config is, from the config classes themselves -------------------------------------


def _section_class(data: dict, top: str) -> Any:
    """The dataclass that a top-level section of a run or PNN config is parsed into (None: not a class)."""
    from hil.pnn import PNNLogConfig, TrainingConfig
    from hil.run import LogConfig

    section = data.get(top)
    typed = section.get("type") if isinstance(section, dict) else None
    registry = {"blackbox": BLACKBOXES, "bench": BLACKBOXES, "model_twin": BLACKBOXES, "objective": OBJECTIVES,
                "estimator": ESTIMATORS, "surrogate": ESTIMATORS}.get(top)
    if registry is not None and isinstance(typed, str) and typed in registry.names():
        return registry.get(typed).Config
    if top == "optimizer":
        return (OPTIMIZERS.get(typed or "gradient").Config, LoopConfig)
    if top == "training":
        return TrainingConfig
    if top == "log":
        return LogConfig if "dataset" not in data else PNNLogConfig
    return None


def _hint(cls: Any, key: str) -> Any:
    classes = cls if isinstance(cls, tuple) else (cls,)
    for c in classes:
        if c is not None and dataclasses.is_dataclass(c):
            hints = typing.get_type_hints(c, include_extras=True)
            if key in hints:
                return hints[key]
    return None


def _field_hint(data: dict, path: tuple) -> Any:
    """The type hint of the field at ``path`` (keys and list indices), FREE inside free-form mappings, None if
    unknown."""
    top = path[0]
    cls = _section_class(data, top)
    rest = path[1:]
    if top in ("blackbox", "bench", "model_twin") and len(rest) >= 2 and rest[0] == "wrappers":
        wrapper = data[top]["wrappers"][rest[1]]
        cls = WRAPPERS.get(wrapper["type"]).Config if wrapper.get("type") in WRAPPERS.names() else None
        rest = rest[2:]
    if cls is None or not rest:
        return None
    hint = _hint(cls, rest[0])
    for step in rest[1:]:
        hint = _strip(hint)
        origin = typing.get_origin(hint)
        if hint is dict or origin is dict:
            return FREE
        if origin in (list, tuple) and isinstance(step, int):
            hint = typing.get_args(hint)[0]
        elif dataclasses.is_dataclass(hint) and isinstance(step, str):
            hint = _hint(hint, step)
        else:
            return None
    if _strip(hint) is dict or typing.get_origin(_strip(hint)) is dict:
        return FREE
    return hint


def _strip(hint: Any) -> Any:
    """``X | None`` -> ``X``."""
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        return args[0] if len(args) == 1 else hint
    return hint


def _range(hint: Any) -> Range | None:
    hint = _strip(hint)
    if typing.get_origin(hint) is Annotated:
        ranges = [m for m in hint.__metadata__ if isinstance(m, Range)]
        return ranges[0] if ranges else None
    return None


def _outside(r: Range, value: Any) -> Any:
    """A value just outside ``r`` (of ``value``'s type), or None when ``r`` is unbounded."""
    integer = isinstance(value, int) and not isinstance(value, bool)
    if r.ge is not None:
        return math.ceil(r.ge) - 1 if integer else r.ge - 0.5 * (abs(r.ge) + 1)
    if r.gt is not None:
        return math.floor(r.gt) if integer else r.gt - 0.5 * (abs(r.gt) + 1)
    if r.le is not None:
        return math.floor(r.le) + 1 if integer else r.le + 0.5 * (abs(r.le) + 1)
    if r.lt is not None:
        return math.ceil(r.lt) if integer else r.lt + 0.5 * (abs(r.lt) + 1)
    return None


# -- the mutations ----------------------------------------------------------------------------------------


def _leaves(node: Any, path: tuple = ()) -> Iterator[tuple[tuple, Any]]:
    if isinstance(node, dict):
        for k, v in node.items():
            yield from _leaves(v, (*path, k))
        if path:
            yield path, node
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from _leaves(v, (*path, i))
        yield path, node
    else:
        yield path, node


def _text(path: tuple) -> str:
    out = ""
    for step in path:
        out += f"[{step}]" if isinstance(step, int) else (f".{step}" if out else str(step))
    return out


def _set(data: dict, path: tuple, value: Any) -> dict:
    out = copy.deepcopy(data)
    node = out
    for step in path[:-1]:
        node = node[step]
    node[path[-1]] = value
    return out


def mutations(data: dict) -> Iterator[tuple[str, dict, str]]:
    """(what, mutated data, the path the error must name)."""
    for path, value in _leaves(data):
        if not path:
            continue
        where = _text(path)
        hint = _field_hint(data, path) if len(path) > 1 else None
        if isinstance(value, bool):
            if hint is not FREE:
                yield f"{where}: a string for a boolean", _set(data, path, "maybe"), where
        elif isinstance(value, (int, float)):
            for bad in (math.inf, -math.inf, math.nan):
                yield f"{where} = {bad}", _set(data, path, bad), where
            if hint is FREE:
                continue
            yield f"{where}: a string for a number", _set(data, path, "lots"), where
            r = _range(hint)
            outside = None if r is None else _outside(r, value)
            if outside is not None:
                yield f"{where} = {outside} (outside {r.describe()})", _set(data, path, outside), where
        elif isinstance(value, str):
            if hint is FREE or path[-1] == "type":
                continue
            if path[0] in ("description", "name") and len(path) > 1:
                continue
            yield f"{where}: a number for a string", _set(data, path, 12345), where
        elif isinstance(value, list):
            if hint is not FREE and len(path) > 1:
                yield f"{where}: a string for a list", _set(data, path, "lots"), where
        elif isinstance(value, dict):
            if hint is FREE:
                continue
            if "type" in value:
                for bad in (["x"], {"a": 1}, 3, "no_such_type"):
                    yield f"{where}.type = {bad!r}", _set(data, (*path, "type"), bad), f"{where}.type"
            yield f"{where}: an unknown key", _set(data, (*path, "bogus_key"), 1), f"{where}.bogus_key"
    yield "an unknown top-level key", {**data, "bogus_key": 1}, "bogus_key"


def _duplicates(text: str) -> Iterator[tuple[str, str, str]]:
    """(what, mutated text, key): each block-style ``key:`` line written twice."""
    lines = text.splitlines()
    for i, line in enumerate(lines):
        m = re.match(r"^(\s*)([A-Za-z_]\w*):(.*)$", line)
        if not m or line.lstrip().startswith("#"):
            continue
        yield f"line {i + 1} ({m.group(2)}) twice", "\n".join([*lines[: i + 1], line, *lines[i + 1:]]), m.group(2)


@pytest.mark.parametrize("config", CONFIGS, ids=lambda p: p.name)
def test_every_mutation_is_refused_naming_the_key(config: Path, tmp_path: Path, capsys) -> None:
    text = config.read_text()
    data = yaml.safe_load(text)
    accepted, unnamed, n = [], [], 0
    target = tmp_path / config.name
    for what, mutated, where in mutations(data):
        n += 1
        target.write_text(yaml.safe_dump(mutated, sort_keys=False))
        code, err = _validate(target, capsys)
        if code == 0:
            accepted.append(what)
        elif where not in err:
            unnamed.append(f"{what}: {err.strip()}")
    for what, mutated_text, key in _duplicates(text):
        n += 1
        target.write_text(mutated_text)
        code, err = _validate(target, capsys)
        if code == 0:
            accepted.append(what)
        elif "written twice" not in err or repr(key) not in err or str(target) not in err:
            unnamed.append(f"{what}: {err.strip()}")
    assert n > 50
    assert not accepted, f"{len(accepted)} of {n} invalid mutations accepted:\n" + "\n".join(accepted)
    assert not unnamed, f"{len(unnamed)} of {n} errors do not name the key:\n" + "\n".join(unnamed)


TASKS = sorted((ROOT / "hil" / "bench" / "tasks").glob("*.yaml"))


@pytest.mark.parametrize("task", TASKS, ids=lambda p: p.name)
def test_every_mutation_of_a_shipped_benchmark_task_is_refused_naming_the_key(task: Path, tmp_path: Path) -> None:
    """The task files `hil bench` runs: the same mutations, through the task loader (which checks the problem as
    written and every method's run config)."""
    from hil.bench.task import load_task
    from hil.errors import HilError

    data = yaml.safe_load(task.read_text())
    accepted, unnamed, n = [], [], 0
    target = tmp_path / task.name
    for what, mutated, where in mutations(data):
        n += 1
        target.write_text(yaml.safe_dump(mutated, sort_keys=False))
        try:
            load_task(str(target))
            accepted.append(what)
        except HilError as exc:  # anything else is a traceback and fails the test
            if where not in str(exc):
                unnamed.append(f"{what}: {exc}")
    assert n > 50
    assert not accepted, f"{len(accepted)} of {n} invalid mutations accepted:\n" + "\n".join(accepted)
    assert not unnamed, f"{len(unnamed)} of {n} errors do not name the key:\n" + "\n".join(unnamed)


@pytest.mark.parametrize(
    "content, message",
    [
        (b"name: caf\xe9\nblackbox: {type: cnon_twin}\n", "not a UTF-8 text file"),
        (b"name: x\nblackbox: {type: [cnon_twin\n", "not valid YAML"),
        (b"", "the top level must be a mapping"),
        (b"- blackbox\n- objective\n", "the top level must be a mapping"),
        (b"name: x\n\tblackbox: 1\n", "not valid YAML"),
    ],
)
def test_broken_files_are_clean_errors_naming_the_file(tmp_path: Path, capsys, content: bytes, message: str) -> None:
    path = tmp_path / "broken.yaml"
    path.write_bytes(content)
    code, err = _validate(path, capsys)
    assert code == 2 and message in err and str(path) in err and "<unicode string>" not in err


def test_a_directory_is_named_as_one(tmp_path: Path, capsys) -> None:
    code, err = _validate(tmp_path, capsys)
    assert code == 2 and "is a directory" in err


def test_every_number_of_every_registered_config_declares_its_range() -> None:
    """Ranges are declared once, at the field (hil.config.Range): no int or float field is left without one."""
    from hil.config import undeclared_numbers
    from hil.pnn import TrainingConfig
    from hil.registry import CALIBRATIONS
    from hil.surrogate import SurrogateConfig

    missing = {}
    for registry in (BLACKBOXES, WRAPPERS, OBJECTIVES, ESTIMATORS, OPTIMIZERS, CALIBRATIONS):
        for name in registry.names():
            config = getattr(registry.get(name), "Config", None)
            if config is not None and undeclared_numbers(config):
                missing[f"{registry.kind} {name}"] = undeclared_numbers(config)
    for config in (LoopConfig, TrainingConfig, SurrogateConfig):
        if undeclared_numbers(config):
            missing[config.__name__] = undeclared_numbers(config)
    assert not missing, f"numeric fields without a declared Range: {missing}"
