"""The options of the op-amp twin (``type: opamp_ngspice``) and of its ``opamp_fom`` objective, declared without
importing the twin (or torch): a config naming them is checked here; :mod:`.opamp` is imported when it is built.
The design space and the output names live here too: they fix the twin's shapes (:meth:`OpAmpTwinConfig.static_spec`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Literal

from hil.config import FiniteFloat, PositiveFloat, Range, check
from hil.registry import BLACKBOXES, OBJECTIVES
from hil.shapes import StaticSpec

#: (name, low, high, scale) of the continuous inputs; the ratio (index 8) is handled on its own.
DESIGN_SPACE: tuple[tuple[str, float, float, str], ...] = (
    ("w_bias", 2e-6, 32e-6, "log"), ("l_bias", 0.2e-6, 2e-6, "log"),
    ("w_dp", 2e-6, 32e-6, "log"), ("l_dp", 0.2e-6, 2e-6, "log"),
    ("w_load", 2e-6, 32e-6, "log"), ("l_load", 0.2e-6, 2e-6, "log"),
    ("w_gain", 2e-6, 32e-6, "log"), ("l_gain", 0.2e-6, 2e-6, "log"),
    ("ratio", 1, 3, "int"),
    ("cc", 0.1e-12, 20e-12, "log"),
)
PARAM_NAMES = tuple(name for name, *_ in DESIGN_SPACE)
OUTPUT_NAMES = ("gain_db", "ugbw_hz", "phase_margin_deg")


@BLACKBOXES.declare("opamp_ngspice", "hil.sim_backends.opamp:OpAmpTwin")
@dataclass
class OpAmpTwinConfig:
    models: str = "generic130"          # or a list of model files to .include (a PDK)
    model_files: list[str] = field(default_factory=list)
    nmos: str = "nch"
    pmos: str = "pch"
    instance: Literal["model", "subckt"] = "model"  # PDKs like SkyWater wrap devices in subcircuits
    vdd_v: PositiveFloat = 1.8
    ibias_a: PositiveFloat = 20e-6
    cl_f: PositiveFloat = 1e-12
    vcm_v: FiniteFloat = 0.9            # between the rails: 0 < vcm_v < vdd_v
    analysis: str = "ac dec 20 1 10g"
    n_workers: Annotated[int, Range(ge=1, le=256)] = 2   # NGspice processes
    timeout_s: Annotated[float, Range(gt=0, le=86400)] = 10.0  # per design; past ~2e6 s the wait overflows
    reload_per_design: bool = False     # parse the deck again per design (slower; for comparison only)
    out_of_bounds: Literal["reject", "clip"] = "clip"

    def __post_init__(self) -> None:
        check(self.models in ("generic130", "files"), "models",
              f"must be 'generic130' or 'files', got {self.models!r}")
        check(self.models != "files" or bool(self.model_files), "model_files",
              "give the model files to include when models: files")
        for i, p in enumerate(self.model_files):
            check(Path(p).expanduser().is_file(), f"model_files[{i}]", f"no such file {p!r}")
        check(0 < self.vcm_v < self.vdd_v, "vcm_v",
              f"the input common-mode voltage must lie between the rails, 0 and vdd_v ({self.vdd_v:g} V), "
              f"got {self.vcm_v:g}")
        check(self.analysis.split()[:1] == ["ac"], "analysis",
              f"must be an AC analysis ('ac dec 20 1 10g'), got {self.analysis!r}")

    def static_spec(self) -> StaticSpec:
        """The :data:`DESIGN_SPACE` sizes -> the :data:`OUTPUT_NAMES` figures."""
        return StaticSpec(len(DESIGN_SPACE), (len(OUTPUT_NAMES),))


@OBJECTIVES.declare("opamp_fom", "hil.sim_backends.opamp:OpAmpFoM", sense="max")
@dataclass
class OpAmpFoMConfig:
    def check_output_shape(self, output_shape: tuple[int, ...]) -> None:
        """The op-amp's three figures, :data:`OUTPUT_NAMES`."""
        check(tuple(output_shape) == (len(OUTPUT_NAMES),), "",
              f"opamp_fom needs [{', '.join(OUTPUT_NAMES)}] outputs, the blackbox gives shape {list(output_shape)}")
