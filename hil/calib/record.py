"""A calibration record: one versioned JSON file holding what a calibration measured and fitted.

::

    {"format": "hil-calibration-record", "version": 1,
     "id": "camera-20261203T170000-1a2b3c", "name": "camera", "created": "2026-12-03T17:00:00+00:00",
     "created_unix": 1796144400.0,
     "rig": {"fingerprint": "<sha256 of the rig section>", "type": "owms_twin", "config": {...}},
     "applied": ["settle-..."],            # records that corrected the rig while this one measured
     "versions": {"hil": "0.1.0", ...},
     "measured": {...}, "fitted": {...}, "uncertainty": {...},   # JSON values: numbers, lists, strings
     "corrections": {"set": [{"on": "blackbox", "key": "settle_s", "value": 0.05}],
                     "wrappers": [{"type": "dark_subtraction", "dark_counts": [...]}]},
     "files": {"log": "camera.h5", "plot": "camera.png"},
     "checksum": "<sha256 of everything above>"}

A record applies to a rig section (``blackbox:`` of a run config, ``bench:`` of a PNN config) as
*corrections*: ``set`` changes an option of the rig (``on: blackbox``) or of its last wrapper of a type
(``on: camera``), and ``wrappers`` are appended outermost, so they act on exactly what the calibration saw.
A record is refused on load when its file is not valid JSON, its checksum does not match (corrupt or
edited), its rig fingerprint differs from the rig it is applied to, it is older than the allowed age, or a
record it was measured on top of is not listed before it.
"""

from __future__ import annotations

import copy
import hashlib
import json
import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from hil.config import PositiveFloat, check, parse
from hil.errors import CalibrationError, ConfigError
from hil.sections import parse_blackbox

FORMAT = "hil-calibration-record"
VERSION = 1
#: records older than this are refused unless the config allows more (``calibrations.max_age_h``)
DEFAULT_MAX_AGE_H = 24.0 * 7


def canonical_json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), allow_nan=False)


def rig_fingerprint(section: Mapping[str, Any], where: str = "blackbox") -> str:
    """sha256 of a rig section as written (validated first; key order and YAML spelling irrelevant, and an option
    a newer hil adds with a default does not change it)."""
    parse_blackbox(section, where)
    return hashlib.sha256(canonical_json(_plain(section)).encode()).hexdigest()


@dataclass
class CalibrationRecord:
    name: str
    id: str
    rig: dict[str, Any]
    measured: dict[str, Any] = field(default_factory=dict)
    fitted: dict[str, Any] = field(default_factory=dict)
    uncertainty: dict[str, Any] = field(default_factory=dict)
    corrections: dict[str, Any] = field(default_factory=dict)
    applied: list[str] = field(default_factory=list)
    files: dict[str, str] = field(default_factory=dict)
    versions: dict[str, str] = field(default_factory=dict)
    created: str = ""
    created_unix: float = 0.0
    path: Path | None = None  # where it was read from (not stored)

    def body(self) -> dict[str, Any]:
        return {"format": FORMAT, "version": VERSION, "id": self.id, "name": self.name, "created": self.created,
                "created_unix": self.created_unix, "rig": self.rig, "applied": list(self.applied),
                "versions": self.versions, "measured": self.measured, "fitted": self.fitted,
                "uncertainty": self.uncertainty, "corrections": self.corrections, "files": self.files}

    def age_h(self, now: float | None = None) -> float:
        return ((time.time() if now is None else now) - self.created_unix) / 3600.0

    def write(self, path: str | Path) -> Path:
        """Write the record (atomically: a crash leaves the old file or the new one, never half of one)."""
        body = self.body()
        try:
            text = canonical_json(body)
        except ValueError as exc:
            raise CalibrationError(f"calibration {self.name}: a value is NaN or infinite ({exc}); nothing "
                                   f"was written") from exc
        body["checksum"] = hashlib.sha256(text.encode()).hexdigest()
        p = Path(path)
        p.parent.mkdir(parents=True, exist_ok=True)
        tmp = p.with_name(p.name + ".tmp")
        tmp.write_text(json.dumps(body, indent=1, sort_keys=True, allow_nan=False))
        tmp.replace(p)
        self.path = p
        return p


def new_record(name: str, rig_section: Mapping[str, Any], where: str, **parts: Any) -> CalibrationRecord:
    from hil.versions import package_versions

    now = time.time()
    stamp = datetime.fromtimestamp(now, timezone.utc)
    rid = f"{name}-{stamp.strftime('%Y%m%dT%H%M%S')}-{hashlib.sha256(str(now).encode()).hexdigest()[:6]}"
    rig = {"fingerprint": rig_fingerprint(rig_section, where), "type": rig_section.get("type"),
           "config": json.loads(canonical_json(_plain(rig_section)))}
    return CalibrationRecord(name=name, id=rid, rig=rig, versions=package_versions(),
                             created=stamp.isoformat(timespec="seconds"), created_unix=now, **parts)


def _plain(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        raise CalibrationError(f"a rig option is {value}; calibrate a rig with finite options")
    return value


def read_record(path: str | Path) -> CalibrationRecord:
    """Read and verify a record file; :class:`CalibrationError` says what is wrong and what to rerun."""
    p = Path(path)
    if not p.is_file():
        raise CalibrationError(f"calibration record {str(p)!r} does not exist; run `hil calibrate` to make it")
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as exc:
        raise CalibrationError(f"calibration record {p} is corrupt (not valid JSON: {exc}); rerun the "
                               f"calibration that wrote it") from exc
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise CalibrationError(f"{p} is not a hil calibration record (format {FORMAT!r})")
    if data.get("version") != VERSION:
        raise CalibrationError(f"{p}: record version {data.get('version')!r}; this hil reads version {VERSION}; "
                               f"rerun the calibration")
    checksum = data.pop("checksum", None)
    if checksum != hashlib.sha256(canonical_json(data).encode()).hexdigest():
        raise CalibrationError(f"calibration record {p} is corrupt or was edited (checksum mismatch); rerun "
                               f"`hil calibrate {data.get('name', 'NAME')}`")
    try:
        record = CalibrationRecord(
            name=data["name"], id=data["id"], rig=data["rig"], measured=data["measured"], fitted=data["fitted"],
            uncertainty=data["uncertainty"], corrections=data["corrections"], applied=list(data["applied"]),
            files=data["files"], versions=data["versions"], created=data["created"],
            created_unix=float(data["created_unix"]), path=p)
    except (KeyError, TypeError, ValueError) as exc:
        raise CalibrationError(f"calibration record {p} lacks a field ({exc}); rerun the calibration") from exc
    return record


# -- the ``calibrations:`` key of a run or PNN config ---------------------------------------------------------


@dataclass
class CalibrationsSection:
    """``calibrations: [a.json, b.json]`` or ``calibrations: {records: [...], max_age_h: 24}``."""

    records: list[str] = field(default_factory=list)
    max_age_h: PositiveFloat = DEFAULT_MAX_AGE_H

    def __post_init__(self) -> None:
        for i, record in enumerate(self.records):
            check(bool(record), f"records[{i}]", "expected a record file path, got ''")


def parse_calibrations(data: Any, where: str = "calibrations") -> CalibrationsSection:
    if data is None:
        return CalibrationsSection()
    if isinstance(data, (list, tuple)):  # the short form: the list of records
        try:
            return parse(CalibrationsSection, {"records": list(data)}, where)
        except ConfigError as exc:  # name the entries as written: calibrations[1], not calibrations.records[1]
            raise ConfigError(str(exc).replace(f"{where}.records", where, 1)) from None
    if not isinstance(data, Mapping):
        raise ConfigError(f"{where}: expected a list of record files or {{records: [...], max_age_h: N}}, "
                          f"got {data!r}")
    return parse(CalibrationsSection, data, where)


def load_records(section: CalibrationsSection, rig_section: Mapping[str, Any], where: str = "blackbox", *,
                 base: Path | None = None, now: float | None = None) -> list[CalibrationRecord]:
    """Read every listed record and check it belongs to this rig, is fresh enough and comes after the records
    it was measured on top of. Paths are relative to ``base`` (the config's folder) when not found as given."""
    fingerprint = rig_fingerprint(rig_section, where)
    records: list[CalibrationRecord] = []
    for i, raw in enumerate(section.records):
        p = Path(raw)
        if not p.is_absolute() and not p.exists() and base is not None:
            p = base / p
        try:
            record = read_record(p)
        except CalibrationError as exc:
            raise CalibrationError(f"calibrations[{i}]: {exc}") from None
        if record.rig.get("fingerprint") != fingerprint:
            raise CalibrationError(
                f"calibrations[{i}]: {p} was made for another rig (its {record.rig.get('type')} config differs from "
                f"this {where} section); rerun `hil calibrate {record.name} --rig CONFIG` on this rig")
        age = record.age_h(now)
        if age > section.max_age_h:
            raise CalibrationError(
                f"calibrations[{i}]: {p} is {age:.1f} h old, more than calibrations.max_age_h = "
                f"{section.max_age_h:g} h; rerun `hil calibrate {record.name} --rig CONFIG` (or raise max_age_h)")
        earlier = {r.id for r in records}
        missing = [rid for rid in record.applied if rid not in earlier]
        if missing:
            raise CalibrationError(
                f"calibrations[{i}]: {p} was measured with {', '.join(missing)} applied; list that record before "
                f"it, or rerun `hil calibrate {record.name}` with the records you use")
        records.append(record)
    return records


def apply_corrections(rig_section: Mapping[str, Any], records: Sequence[CalibrationRecord],
                      where: str = "blackbox") -> dict[str, Any]:
    """The rig section with every record's corrections applied in order (a new mapping)."""
    out = copy.deepcopy(dict(rig_section))
    for record in records:
        corr = record.corrections or {}
        for change in corr.get("set", []):
            target = _target(out, change.get("on", "blackbox"), record, where)
            target[change["key"]] = copy.deepcopy(change["value"])
        extra = corr.get("wrappers", [])
        if extra:
            out["wrappers"] = list(out.get("wrappers") or []) + copy.deepcopy(list(extra))
    parse_blackbox(out, where)  # a correction that does not fit the rig fails here, naming the section
    return out


def _target(section: dict[str, Any], on: str, record: CalibrationRecord, where: str) -> dict[str, Any]:
    if on == "blackbox":
        return section
    for wrapper in reversed(section.get("wrappers") or []):
        if isinstance(wrapper, dict) and wrapper.get("type") == on:
            return wrapper
    raise CalibrationError(f"calibration record {record.path or record.id} sets an option of the {on!r} wrapper, "
                           f"but {where} has none; rerun the calibration on this rig")


def record_summary(records: Sequence[CalibrationRecord]) -> list[dict[str, Any]]:
    """What a run's log attributes say about the records it used."""
    return [{"id": r.id, "name": r.name, "path": str(r.path) if r.path else None, "created": r.created,
             "fitted": r.fitted} for r in records]
