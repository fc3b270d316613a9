"""Run calibrations on a rig: ``hil calibrate NAME --rig CONFIG`` and ``hil calibrate all --rig CONFIG``.

The rig is the ``blackbox:`` section of a run config or the ``bench:`` section of a PNN config, with the
records the config already lists under ``calibrations:`` (and any given with ``--with``) applied first.
Each calibration writes into the output folder (default ``calibrations/<config name>/``):
``NAME.json`` (the record), ``NAME.png`` (what it measured and fitted), ``NAME.h5`` (every query it made,
``purpose: calibration``) and any files of its own (the twin fit's fitted twin config).
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from hil.calib.base import Calibration, CalibrationContext, CalibrationSession, describe_rig
from hil.calib.record import (
    CalibrationRecord,
    apply_corrections,
    load_records,
    new_record,
    parse_calibrations,
    read_record,
)
from hil.calib.section import parse_calibrate  # noqa: F401  (re-exported)
from hil.config import load_yaml, parse
from hil.errors import CalibrationError, ConfigError
from hil.querylog import QueryLog
from hil.registry import CALIBRATIONS
from hil.sections import load_blackbox_file, parse_blackbox


@dataclass
class RigConfig:
    """Where a rig comes from: its section as written, where that section sits, the records to apply, and the
    config's ``calibrate:`` options (per calibration, and the ones ``all`` skips)."""

    name: str
    section: dict[str, Any]
    where: str
    records: list[CalibrationRecord]
    model_section: dict[str, Any] | None
    base_dir: Path
    options: dict[str, dict[str, Any]] = field(default_factory=dict)
    skip: list[str] = field(default_factory=list)

    def corrected(self) -> dict[str, Any]:
        return apply_corrections(self.section, self.records, self.where)


def load_rig_config(path: str | Path, *, extra_records: Sequence[str] = (), model: str | None = None,
                    now: float | None = None) -> RigConfig:
    """The rig of a run config (``blackbox``) or PNN config (``bench``), with its records verified."""
    p = Path(path)
    data = load_yaml(p)
    if "bench" in data and "dataset" in data:
        where, model_section = "bench", data.get("model_twin")
    elif "blackbox" in data:
        where = "blackbox"
        est = data.get("estimator") if isinstance(data.get("estimator"), Mapping) else {}
        model_section = est.get("model") if est.get("type") == "exact" else None
    else:
        raise ConfigError(f"{p}: no rig: a run config has a 'blackbox:' section, a PNN config a 'bench:' section")
    section = data[where]
    parse_blackbox(section, where)
    if isinstance(model_section, str):
        model_section = load_blackbox_file(model_section, base=p.parent)
    if model is not None:
        model_section = load_blackbox_file(model)
    calibrations = parse_calibrations(data.get("calibrations"))
    calibrations.records = [*calibrations.records, *extra_records]
    records = load_records(calibrations, section, where, base=p.parent, now=now)
    name = data.get("name") if isinstance(data.get("name"), str) else p.stem
    options, skip = parse_calibrate(data.get("calibrate"))
    return RigConfig(name, dict(section), where, records, model_section, p.parent, options, skip)


def parse_options(cls: type[Calibration], pairs: Sequence[str], name: str,
                  base: Mapping[str, Any] | None = None) -> Any:
    """``["target_peak=0.6", ...]`` over the config's ``calibrate.NAME`` options (``base``) -> the calibration's
    ``Config`` (values read as YAML)."""
    raw: dict[str, Any] = dict(base or {})
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--option {pair!r}: expected KEY=VALUE")
        try:
            raw[key.strip()] = yaml.safe_load(value)
        except yaml.YAMLError as exc:
            raise ConfigError(f"--option {pair!r}: the value is not valid YAML ({exc.__class__.__name__}); quote "
                              f"a string, e.g. {key.strip()}='\"...\"'") from None
    return parse(cls.Config, raw, f"calibration {name} options")


def run_calibration(name: str, rig: RigConfig, *, out_dir: str | Path | None = None, options: Sequence[str] = (),
                    seed: int = 0, echo: Callable[[str], None] = print) -> CalibrationRecord:
    """Run one calibration on ``rig`` and write its record, plot and log; returns the record."""
    calibration = _configured(name, rig, options)
    out = Path(out_dir) if out_dir is not None else Path("calibrations") / rig.name
    section = rig.corrected()
    context = CalibrationContext(rig_section=section, where=rig.where, model_section=rig.model_section,
                                 out_dir=out, seed=seed)
    box = parse_blackbox(section, rig.where).build()
    lack = calibration.missing(box, context)
    if lack:
        raise CalibrationError(f"calibration {name} cannot run on this rig ({describe_rig(section)}): {lack}; "
                               f"nothing was queried")
    out.mkdir(parents=True, exist_ok=True)
    log_path = _fresh(out / f"{name}.h5")
    t0 = time.perf_counter()
    with box:
        qbox = calibration.query_box(box)  # the rig itself, or a view of it (e.g. whole frames)
        with QueryLog.create(log_path, input_dim=qbox.spec.input_dim, output_shape=qbox.spec.output_shape,
                             run_id=f"calibrate-{name}",
                             config={"rig": section, "calibration": name,
                                     "options": dataclasses.asdict(calibration.config)},
                             attrs={"kind": "calibration", "calibrations": [r.id for r in rig.records]}) as log:
            qbox.attach_log(log)
            try:
                result = calibration.measure(CalibrationSession(qbox, context, base=box))
            finally:
                qbox.attach_log(None)
    wall = time.perf_counter() - t0
    files = {"log": log_path.name, **result.files}
    record = new_record(name, rig.section, rig.where, measured=result.measured, fitted=result.fitted,
                        uncertainty=result.uncertainty, corrections=result.corrections,
                        applied=[r.id for r in rig.records], files=files)
    record_path = out / f"{name}.json"
    png = calibration.plot(result, out / f"{name}.png")
    if png is not None:
        record.files["plot"] = Path(png).name
    record.measured.setdefault("queries", qbox.stats.queries)
    record.measured.setdefault("wall_s", round(wall, 3))
    record.write(record_path)
    echo(f"{name}: {qbox.stats.queries} queries in {wall:.1f} s")
    for line in result.lines:
        echo(f"  {line}")
    echo(f"  record: {record_path}" + (f"  plot: {out / record.files['plot']}" if "plot" in record.files else ""))
    return record


def _fresh(path: Path) -> Path:
    """``path``, or ``stem-2.h5``, ... when it exists: a rerun never overwrites an earlier calibration's log."""
    candidate, i = path, 2
    while candidate.exists():
        candidate = path.with_name(f"{path.stem}-{i}{path.suffix}")
        i += 1
    return candidate


def applicable(rig: RigConfig) -> list[tuple[str, str | None]]:
    """Every registered calibration in ``all`` order, with what this rig lacks for it (None: it can run)."""
    section = rig.corrected()
    box = parse_blackbox(section, rig.where).build()
    context = CalibrationContext(rig_section=section, where=rig.where, model_section=rig.model_section)
    return [(name, _configured(name, rig).missing(box, context)) for name in _in_order()]


def _in_order() -> list[str]:
    """The registered calibrations in ``hil calibrate all``'s order."""
    return sorted(CALIBRATIONS.names(), key=lambda n: (CALIBRATIONS.get(n).order, n))


def _configured(name: str, rig: RigConfig, options: Sequence[str] = ()) -> Calibration:
    """Calibration ``name`` with the config's ``calibrate.NAME`` options and ``options`` (KEY=VALUE) over them."""
    cls = CALIBRATIONS.get(name)
    return cls.from_config(parse_options(cls, options, name, rig.options.get(name)))


def run_all(rig: RigConfig, *, out_dir: str | Path | None = None, seed: int = 0,
            echo: Callable[[str], None] = print) -> list[CalibrationRecord]:
    """Every calibration the rig supports, in order, each measured with the ones before it applied."""
    out = Path(out_dir) if out_dir is not None else Path("calibrations") / rig.name
    done: list[CalibrationRecord] = []
    for name in _in_order():
        if name in rig.skip:
            echo(f"{name}: skipped (calibrate.skip in the config)")
            continue
        step = dataclasses.replace(rig, records=[*rig.records, *done])
        section = step.corrected()
        box = parse_blackbox(section, rig.where).build()
        context = CalibrationContext(rig_section=section, where=rig.where, model_section=rig.model_section)
        lack = _configured(name, step).missing(box, context)
        if lack:
            echo(f"{name}: skipped ({lack})")
            continue
        done.append(run_calibration(name, step, out_dir=out, seed=seed, echo=echo))
    listed = [str(Path(r.path)) for r in [*rig.records, *done] if r.path is not None]
    index = out / "calibrations.yaml"
    index.write_text(yaml.safe_dump({"calibrations": listed}, sort_keys=False))
    echo(f"add to the config (or copy from {index}):\ncalibrations:\n" + "".join(f"  - {p}\n" for p in listed))
    return done


def describe_record(path: str | Path) -> str:
    """``hil calibrate show RECORD``: what a record holds."""
    r = read_record(path)
    lines = [f"{r.name} ({r.id}), made {r.created} ({r.age_h():.1f} h ago) for a {r.rig.get('type')} rig",
             f"fitted: {json.dumps(_short(r.fitted))}", f"uncertainty: {json.dumps(_short(r.uncertainty))}",
             f"corrections: {json.dumps(_short(r.corrections))}"]
    if r.applied:
        lines.append(f"measured with: {', '.join(r.applied)}")
    return "\n".join(lines)


def _short(value: Any, n: int = 6) -> Any:
    if isinstance(value, Mapping):
        return {k: _short(v, n) for k, v in value.items()}
    if isinstance(value, list) and len(value) > n:
        return f"<{len(value)} values>"
    return value
