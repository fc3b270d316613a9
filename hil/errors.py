"""One exception hierarchy for hil.

Catch :class:`HilError` for anything hil raises on purpose; catch a subclass to
tell "your config is wrong" apart from "the device timed out".
"""

from __future__ import annotations


class HilError(Exception):
    """Base class of every error hil raises on purpose."""


class ConfigError(HilError, ValueError):
    """A configuration is invalid: unknown key, wrong type, unknown ``type:``."""


class InputError(HilError, ValueError):
    """A tensor handed to a BlackBox is invalid: wrong dtype, shape, NaN/inf or out of bounds."""


class RegistryError(HilError, KeyError):
    """A name is registered twice, or looked up but not registered."""

    def __str__(self) -> str:  # KeyError quotes its message; keep it readable
        return str(self.args[0]) if self.args else ""


class DeviceError(HilError, RuntimeError):
    """A BlackBox (device or twin) failed to answer."""


class PartialAnswerError(DeviceError):
    """A device answered the first rows of a batch, then failed for good.

    ``answered`` holds those answers (``k x *output_shape``): ``BlackBox.query``
    logs them before re-raising, so nothing a device answered is lost.
    """

    def __init__(self, message: str, answered: object) -> None:
        super().__init__(message)
        self.answered = answered


class NotConnectedError(DeviceError):
    """A BlackBox was queried before ``connect()`` / ``with``."""


class LogError(HilError, RuntimeError):
    """A query log cannot be written, read or resumed."""


class EstimatorError(HilError, RuntimeError):
    """A gradient estimator cannot produce a gradient (e.g. no data, no differentiable model)."""


class OptimizerError(HilError, RuntimeError):
    """An optimiser broke the ask/tell contract (e.g. asked past its budget) or cannot go on."""


class CalibrationError(HilError, RuntimeError):
    """A calibration cannot run on this rig, or a calibration record is corrupt, stale or for another rig."""
