"""Conformance checks for calibrations (:class:`hil.protocols.CalibrationImplementation`).

::

    from hil.testing.conformance import CalibrationConformance

    class TestMyCalibration(CalibrationConformance):
        calibration = "my_calibration"
        rig = {"type": "owms_twin", "slm_shape": [20, 20], "wrappers": [{"type": "camera"}]}
        options = {"repeats": 2}                  # small and fast

The calibration runs through the runner ``hil calibrate`` uses (:func:`hil.calib.runner.run_calibration`) on
the small ``rig`` (a rig type with a simulated counterpart runs on it); its record must load back, verified,
and apply to the rig. A calibration that cannot run on every rig is also refused, before any query, on
``unsuitable_rig`` (default: a two-oscillator CNON twin, which has no camera, SLM, settle control, noise or
model twin).
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar

import pytest
import torch
import yaml

from hil.calib.base import Calibration
from hil.calib.record import read_record
from hil.calib.runner import load_rig_config, run_calibration
from hil.config import parse, undeclared_numbers
from hil.errors import CalibrationError
from hil.registry import CALIBRATIONS
from hil.sections import parse_blackbox
from hil.testing.common import Conformance, check, simulated, valid_inputs


class CalibrationConformance(Conformance):
    """The checks every calibration passes. Set ``calibration`` (its registered name) and ``rig`` (a small
    ``blackbox:`` section it runs on); optionally ``options`` (its ``calibrate.NAME`` options, for speed),
    ``model`` (a model twin section, for calibrations that fit one), ``before`` (calibrations run first, their
    records applied, e.g. ``["slmsuite_fourier"]``), ``unsuitable_rig`` (``None``: it runs on any rig),
    ``xfail_checks``."""

    calibration: ClassVar[str]
    rig: ClassVar[Mapping[str, Any]]
    options: ClassVar[Mapping[str, Any]] = {}
    model: ClassVar[Mapping[str, Any] | None] = None
    before: ClassVar[Sequence[str]] = ()
    #: options of each calibration in ``before`` (by name)
    before_options: ClassVar[Mapping[str, Mapping[str, Any]]] = {}
    unsuitable_rig: ClassVar[Mapping[str, Any] | None] = {"type": "cnon_twin", "dim": 2, "steps": 2}

    @classmethod
    def covers(cls) -> list[tuple[str, str]]:
        return [("calibration", cls.calibration)]

    @staticmethod
    def _quiet(_: str) -> None:
        pass

    def write_config(self, folder: Path, rig: Mapping[str, Any]) -> Path:
        """A run config holding ``rig`` and the options (``calibrate:``), as ``hil calibrate --rig`` reads it."""
        folder.mkdir(parents=True, exist_ok=True)
        calibrate = {self.calibration: dict(self.options)}
        calibrate.update({name: dict(opts) for name, opts in self.before_options.items()})
        config = {"name": "conformance", "blackbox": dict(rig), "calibrate": calibrate}
        path = folder / "rig.yaml"
        path.write_text(yaml.safe_dump(json.loads(json.dumps(config)), sort_keys=False))
        if self.model is not None:
            (folder / "model.yaml").write_text(yaml.safe_dump({"blackbox": json.loads(json.dumps(self.model))}))
        return path

    def _model(self, folder: Path) -> str | None:
        return str(folder / "model.yaml") if self.model is not None else None

    @pytest.fixture(scope="class")
    @classmethod
    def conformance_rig(cls, tmp_path_factory: Any) -> Iterator[tuple[Path, list[str]]]:
        """The rig's config (on its simulated counterpart, for the class) and the records of ``before``."""
        self = cls()  # a class-scoped fixture is a classmethod (pytest 9); the settings are the class's
        folder = tmp_path_factory.mktemp(f"calibration-{self.calibration}")
        with simulated(self.rig) as rig:
            path = self.write_config(folder, rig)
            records: list[str] = []
            for name in self.before:
                record = run_calibration(name, load_rig_config(path, extra_records=records, model=self._model(folder)),
                                         out_dir=folder / "before", echo=self._quiet)
                records.append(str(record.path))
            yield path, records

    # -- the checks ---------------------------------------------------------------------------------------
    @check
    def test_config_declares_a_range_for_every_number(self) -> None:
        cls = CALIBRATIONS.get(self.calibration)
        assert dataclasses.is_dataclass(getattr(cls, "Config", None)), f"{cls.__name__} has no Config dataclass"
        missing = undeclared_numbers(cls.Config)
        assert not missing, f"{cls.__name__}.Config: numbers without a declared range: {missing}"

    @check
    def test_builds_from_its_options_and_describes_itself(self) -> None:
        cls = CALIBRATIONS.get(self.calibration)
        assert issubclass(cls, Calibration)
        for options in ({}, dict(self.options)):
            calibration = cls.from_config(parse(cls.Config, options, self.calibration))
            assert isinstance(calibration, cls)
        assert cls.name == self.calibration, f"{cls.__name__}.name is {cls.name!r}; it is registered as " \
                                             f"{self.calibration!r}"
        assert isinstance(cls.order, int) and isinstance(cls.summary, str) and cls.summary, \
            "give order (an int) and summary (one line for `hil calibrate list`)"

    @check
    def test_runs_on_a_small_rig_and_writes_a_record_that_loads_back(self, conformance_rig: Any,
                                                                     tmp_path: Path) -> None:
        from hil.querylog import read_log

        path, records = conformance_rig
        out = tmp_path / "out"
        lines: list[str] = []
        record = run_calibration(self.calibration, load_rig_config(path, extra_records=records,
                                                                   model=self._model(path.parent)),
                                 out_dir=out, echo=lines.append)
        assert record.path is not None and record.path.is_file()
        again = read_record(record.path)  # verified: format, version, checksum
        for key in ("name", "id", "measured", "fitted", "uncertainty", "corrections", "applied", "files", "rig"):
            assert getattr(again, key) == json.loads(json.dumps(getattr(record, key))), f"record.{key} changed"
        assert again.name == self.calibration and again.applied == [read_record(r).id for r in records]
        for role, name in again.files.items():
            assert (out / name).is_file(), f"the record names a {role} file {name} that is not in {out}"
        log = read_log(out / again.files["log"])
        assert len(log) == again.measured["queries"] > 0, "every query the calibration made is in its log"
        assert set(log.purpose_labels()) == {"calibration"}
        assert _finite(again.body()), "a record holds finite JSON values only"
        # the record applies to the rig it was made on: the corrected rig builds, connects and answers
        corrected = load_rig_config(path, extra_records=[*records, str(record.path)]).corrected()
        box = parse_blackbox(corrected, "blackbox").build()
        with box:
            x = valid_inputs(box.spec, 2)
            y = box.query(x)
        assert tuple(y.shape) == (2, *box.spec.output_shape)

    @check
    def test_refuses_an_unsuitable_rig_before_any_query(self, tmp_path: Path) -> None:
        if self.unsuitable_rig is None:
            pytest.skip("unsuitable_rig is None: it runs on any rig")
        path = self.write_config(tmp_path, self.unsuitable_rig)
        out = tmp_path / "out"
        with pytest.raises(CalibrationError, match="nothing was queried"):
            run_calibration(self.calibration, load_rig_config(path, model=self._model(tmp_path)), out_dir=out,
                            echo=self._quiet)
        assert not out.exists() or not any(out.glob("*.h5")), "a refused calibration opened a log"


def _finite(value: Any) -> bool:
    if isinstance(value, float):
        return math.isfinite(value)
    if isinstance(value, Mapping):
        return all(_finite(v) for v in value.values())
    if isinstance(value, (list, tuple)):
        return all(_finite(v) for v in value)
    if isinstance(value, torch.Tensor):
        return False  # not JSON
    return True
