"""The calibration contract: what a calibration plug-in declares and does.

A calibration is a class registered in :data:`hil.registry.CALIBRATIONS` (one file in ``calibration/``
plus the decorator)::

    @CALIBRATIONS.register("camera")
    class CameraCalibration(Calibration):
        order = 20                      # `hil calibrate all` runs calibrations by increasing order
        summary = "dark level, exposure for a target peak, linearity"

        @dataclass
        class Config:                   # options: `hil calibrate camera --option target_peak=0.6`
            target_peak: float = 0.6

        def missing(self, rig, context):  # what this rig lacks, checked before any query; None if nothing
            ...

        def measure(self, session):     # query only through session.query (validated, logged, purpose
            ...                         #   "calibration"); return a CalibrationResult

        def plot(self, result, path):   # a PNG of what was measured and fitted
            ...

The runner (:mod:`hil.calib.runner`) builds the rig, refuses it if ``missing`` says so, opens a query log,
calls ``measure``, and writes the record (:mod:`hil.calib.record`) and the plot.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import torch

from hil.blackbox import BlackBox


@dataclass
class CalibrationContext:
    """What a calibration may use besides the rig: the rig's section as written (with earlier corrections
    applied), the model twin section when the config names one, and where outputs go."""

    rig_section: dict[str, Any]
    where: str = "blackbox"
    model_section: dict[str, Any] | None = None
    out_dir: Path = Path("calibrations")
    seed: int = 0


@dataclass
class CalibrationResult:
    """What ``measure`` returns. Values are JSON-able (numbers, strings, nested lists and mappings).

    ``corrections``: ``{"set": [{"on": "blackbox" | WRAPPER_TYPE, "key": ..., "value": ...}],
    "wrappers": [{"type": ..., ...}]}`` (see :mod:`hil.calib.record`). ``files``: extra files written into
    ``context.out_dir`` (e.g. a fitted twin config), by role. ``lines``: what the CLI prints."""

    measured: dict[str, Any] = field(default_factory=dict)
    fitted: dict[str, Any] = field(default_factory=dict)
    uncertainty: dict[str, Any] = field(default_factory=dict)
    corrections: dict[str, Any] = field(default_factory=dict)
    files: dict[str, str] = field(default_factory=dict)
    lines: list[str] = field(default_factory=list)


class CalibrationSession:
    """The connected rig, as a calibration sees it: every query goes through :meth:`query`."""

    def __init__(self, rig: BlackBox, context: CalibrationContext, base: BlackBox | None = None) -> None:
        self.rig = rig
        #: the rig as configured, when ``rig`` is a view of it (:meth:`Calibration.query_box`)
        self.base = rig if base is None else base
        self.context = context
        self.generator = torch.Generator().manual_seed(context.seed)
        self.steps = 0

    def query(self, x: torch.Tensor) -> torch.Tensor:
        """``batch x d_in`` -> ``batch x *output_shape`` float32, through the rig's validated, logged path."""
        y = self.rig.query(x, purpose="calibration", iteration=self.steps)
        self.steps += 1
        return torch.as_tensor(y).to(torch.float32)

    def uniform(self, n: int) -> torch.Tensor:
        """``n x d_in`` inputs uniform in the rig's bounds (seeded)."""
        spec = self.rig.spec
        return spec.lower + (spec.upper - spec.lower) * torch.rand(n, spec.input_dim, generator=self.generator)


class Calibration:
    """Base class of calibration plug-ins (see the module docstring)."""

    name: ClassVar[str] = ""
    order: ClassVar[int] = 100
    summary: ClassVar[str] = ""

    @dataclass
    class Config:
        pass

    def __init__(self, config: Any = None) -> None:
        self.config = config if config is not None else self.Config()

    @classmethod
    def from_config(cls, config: Any) -> Calibration:
        return cls(config)

    def missing(self, rig: BlackBox, context: CalibrationContext) -> str | None:
        """What the rig lacks for this calibration (a sentence), or None if it can run. No query is made."""
        return None

    def query_box(self, rig: BlackBox) -> BlackBox:
        """The BlackBox this calibration queries (and logs) on the connected rig: the rig itself, or a view
        of the same devices (e.g. whole frames for slmsuite's calibrations)."""
        return rig

    def measure(self, session: CalibrationSession) -> CalibrationResult:
        raise NotImplementedError

    def plot(self, result: CalibrationResult, path: Path) -> Path | None:
        """Draw what was measured and fitted into ``path`` (PNG); None if there is nothing to draw."""
        return None


def find_control(rig: BlackBox, method: str) -> Any:
    """The outermost object in the rig's wrapper chain that has ``method`` (e.g. ``set_exposure_s``), or None."""
    box: Any = rig
    while box is not None:
        if callable(getattr(box, method, None)):
            return box
        box = getattr(box, "inner", None)
    return None


def describe_rig(section: Mapping[str, Any]) -> str:
    """``owms_twin with wrappers camera, slm_macropixels``: how an error names a rig."""
    wrappers = [w.get("type", "?") for w in section.get("wrappers") or [] if isinstance(w, Mapping)]
    return f"{section.get('type')}" + (f" with wrappers {', '.join(wrappers)}" if wrappers else "")


@contextmanager
def figure(path: Path, ncols: int = 1, size: tuple[float, float] = (10, 4)) -> Iterator[tuple[Any, Any]]:
    """``with figure(path, 2) as (fig, (a, b)):`` a calibration's PNG, laid out, saved and closed on exit."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, ncols, figsize=size)
    try:
        yield fig, axes
        fig.tight_layout()
        fig.savefig(path, dpi=90)
    finally:
        plt.close(fig)
