"""A config's ``calibrate:`` section (the options of ``hil calibrate`` for its rig), checked without importing the
calibrations that it only names (:meth:`hil.registry.Registry.knows`)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from hil.config import parse
from hil.errors import ConfigError
from hil.registry import CALIBRATIONS


def parse_calibrate(data: Any, where: str = "calibrate") -> tuple[dict[str, dict[str, Any]], list[str]]:
    """A config's ``calibrate:`` section: ``{NAME: {option: value}, skip: [NAME, ...]}``, checked against the
    registered calibrations and their options (``hil calibrate --option`` overrides on top)."""
    if data is None:
        return {}, []
    if not isinstance(data, Mapping):
        raise ConfigError(f"{where}: expected a mapping of calibration names to options (and skip: [...]), "
                          f"got {data!r}")
    skip = data.get("skip", [])
    if not isinstance(skip, list):
        raise ConfigError(f"{where}.skip: expected a list of calibrations ({', '.join(CALIBRATIONS.names())}), "
                          f"got {skip!r}")
    for i, n in enumerate(skip):
        if not CALIBRATIONS.knows(n):
            raise ConfigError(f"{where}.skip[{i}]: {n!r} is not a calibration; allowed: "
                              f"{', '.join(CALIBRATIONS.names())}")
    options: dict[str, dict[str, Any]] = {}
    for name, opts in data.items():
        if name == "skip":
            continue
        if not CALIBRATIONS.knows(name):
            raise ConfigError(f"{where}.{name}: unknown calibration; allowed: {', '.join(CALIBRATIONS.names())}, "
                              f"skip")
        parse(CALIBRATIONS.config(name), opts, f"{where}.{name}")
        options[name] = dict(opts or {})
    return options, list(skip)
