"""Op-amp twin: a two-stage Miller CMOS op-amp sized in NGspice (``type: opamp_ngspice``).

Circuit (our own netlist, :data:`NETLIST`): NMOS differential pair M1/M2 with
a PMOS current-mirror load M3/M4, tail source M5 mirrored from the diode M8
(fed by ``ibias_a``); second stage: PMOS common source M6 with NMOS sink M7,
Miller capacitor ``Cc`` from the first-stage output to the output, load
``cl_f``. The open-loop response is measured with a DC-only feedback loop
(1 GH inductor, 1 F to ground) that holds the bias point at the common-mode
voltage while leaving the loop open for AC.

Design space: 10 inputs in physical units, declared in the spec (:mod:`hil.space`), so that every
optimiser searches the same unit cube and the simulator (and the log) receive metres, farads and a whole
number:

====  ==============  ===========================================================
 idx  name            physical range and scale
====  ==============  ===========================================================
 0,1  w_bias, l_bias  M5, M7, M8 (bias): W 2–32 µm, L 0.2–2 µm, both log scale
 2,3  w_dp, l_dp      M1, M2 (differential pair)
 4,5  w_load, l_load  M3, M4 (load)
 6,7  w_gain, l_gain  M6 (gain transistor)
 8    ratio           integer 1, 2, 3: W(M7) = ratio x W(M5); each whole number owns a third of the unit cube
 9    cc              compensation capacitor 0.1–20 pF, log scale
====  ==============  ===========================================================

The integer ratio: the simulator always sees a whole number; the optimiser and a surrogate see the
continuous unit-cube coordinate. A surrogate therefore learns a smoothed step in that input, and its
gradient there is the slope of the smoothing: it pushes the input across a bin edge when the
neighbouring ratio measured better, which is the only sense a gradient has for an integer.
The exact gradient does not exist (no differentiable model of NGspice).

Output (``batch x 3``): DC gain (dB), unity-gain bandwidth (Hz), phase margin
(degrees); an invalid design (no convergence, never crosses 0 dB, a crashed or
hung simulator) is a row of NaN, logged as such; the loop ranks it last and
the surrogate skips it. The ``opamp_fom`` objective turns the figures into the
FoM (:mod:`.opamp_measure`, higher is better).

Simulation runs in a pool of NGspice processes (:mod:`.spice_pool`); the
netlist is parsed once per process and each design is ``alterparam`` +
``reset`` + ``ac``.
"""

from __future__ import annotations

import math
from importlib import resources
from pathlib import Path

import numpy as np
import torch
from hil.sim_backends.ngspice import check_libngspice
from hil.sim_backends.opamp_config import (  # noqa: F401  (re-exported)
    DESIGN_SPACE,
    OUTPUT_NAMES,
    PARAM_NAMES,
    OpAmpFoMConfig,
    OpAmpTwinConfig,
)
from hil.sim_backends.opamp_measure import FOM_GAIN_PER_DB, FOM_PM_PER_DEG, FOM_UGBW_PER_HZ, PM_CAP_DEG

from hil.blackbox import BlackBox, BlackBoxSpec
from hil.config import FieldError
from hil.errors import ConfigError
from hil.objectives import Objective
from hil.registry import BLACKBOXES, OBJECTIVES

NETLIST = """* hil two-stage Miller op-amp
{includes}
.param w_bias=8e-6 l_bias=1e-6 w_dp=8e-6 l_dp=0.5e-6 w_load=4e-6 l_load=1e-6
.param w_gain=16e-6 l_gain=0.5e-6 ratio=2 cc=2e-12
.param vdd={vdd} ibias={ibias} cl={cl} vcm={vcm}
VDD vdd 0 {{vdd}}
IBIAS vdd bias {{ibias}}
{m8} bias bias 0 0 {nmos} W={{w_bias}} L={{l_bias}}
{m5} tail bias 0 0 {nmos} W={{w_bias}} L={{l_bias}}
{m1} n3 inn tail 0 {nmos} W={{w_dp}} L={{l_dp}}
{m2} n1 inp tail 0 {nmos} W={{w_dp}} L={{l_dp}}
{m3} n3 n3 vdd vdd {pmos} W={{w_load}} L={{l_load}}
{m4} n1 n3 vdd vdd {pmos} W={{w_load}} L={{l_load}}
{m6} out n1 vdd vdd {pmos} W={{w_gain}} L={{l_gain}}
{m7} out bias 0 0 {nmos} W={{ratio*w_bias}} L={{l_bias}}
CC n1 out {{cc}}
CL out 0 {{cl}}
VIN inp 0 DC {{vcm}} AC 1
LFB out inn 1e9
CFB inn 0 1
.end
"""


def generic_models_path() -> Path:
    """Our generic 130 nm-class BSIM4 cards (``nch``/``pch``), shipped as package data."""
    return Path(str(resources.files("hil.sim_backends") / "spice_models" / "generic130.lib"))


def build_netlist(includes: list[str], nmos: str, pmos: str, instance: str, *, vdd_v: float, ibias_a: float,
                  cl_f: float, vcm_v: float) -> str:
    prefix = "X" if instance == "subckt" else "M"
    devices = {f"m{i}": f"{prefix}M{i}" for i in range(1, 9)}
    inc = "\n".join(f'.include "{p}"' for p in includes)
    return NETLIST.format(includes=inc, nmos=nmos, pmos=pmos, vdd=vdd_v, ibias=ibias_a, cl=cl_f, vcm=vcm_v,
                          **devices)


def designs(x: np.ndarray) -> list[dict[str, float]]:
    """``batch x 10`` physical sizes (SI units, the ratio a whole number) -> one ``{param: value}`` per design."""
    return [{name: float(v) for (name, *_), v in zip(DESIGN_SPACE, row, strict=True)}
            for row in np.asarray(x, dtype=np.float64)]


def design_spec_bounds() -> tuple[torch.Tensor, torch.Tensor, tuple[str, ...], tuple[bool, ...]]:
    """Lower and upper bounds, scales and integer flags of :data:`DESIGN_SPACE`, for the BlackBoxSpec."""
    lower = torch.tensor([lo for _, lo, _, _ in DESIGN_SPACE], dtype=torch.float64)
    upper = torch.tensor([hi for _, _, hi, _ in DESIGN_SPACE], dtype=torch.float64)
    scale = tuple("linear" if kind == "int" else kind for *_, kind in DESIGN_SPACE)
    integer = tuple(kind == "int" for *_, kind in DESIGN_SPACE)
    return lower, upper, scale, integer


@BLACKBOXES.register("opamp_ngspice")
class OpAmpTwin(BlackBox):
    """``batch x 10`` physical sizes (:data:`DESIGN_SPACE`) -> ``batch x 3`` [gain_db, ugbw_hz, phase_margin_deg]
    (NaN: an invalid design)."""

    Config = OpAmpTwinConfig

    def __init__(self, config: Config | None = None) -> None:
        cfg = config or self.Config()
        self.config = cfg
        d = len(DESIGN_SPACE)
        lower, upper, scale, integer = design_spec_bounds()
        super().__init__(BlackBoxSpec(name="opamp_ngspice", input_dim=d, lower=lower, upper=upper,
                                      output_shape=(len(OUTPUT_NAMES),), stochastic=False,
                                      out_of_bounds=cfg.out_of_bounds, scale=scale, integer=integer))
        includes = ([str(generic_models_path())] if cfg.models == "generic130"
                    else [str(Path(p).expanduser().resolve()) for p in cfg.model_files])
        self.netlist = build_netlist(includes, cfg.nmos, cfg.pmos, cfg.instance, vdd_v=cfg.vdd_v,
                                     ibias_a=cfg.ibias_a, cl_f=cfg.cl_f, vcm_v=cfg.vcm_v)
        self.pool = None
        self.invalid_reasons: dict[str, int] = {}

    @classmethod
    def from_config(cls, config: Config) -> OpAmpTwin:
        return cls(config)

    def _connect(self) -> None:
        from hil.sim_backends.spice_pool import SimulatorPool

        check_libngspice()
        self.pool = SimulatorPool(self.netlist, self.config.analysis, "v(out)", n_workers=self.config.n_workers,
                                  timeout_s=self.config.timeout_s, reload=self.config.reload_per_design)
        self.pool.start()

    def _close(self) -> None:
        if self.pool is not None:
            self.pool.close()
            self.pool = None

    def _query(self, x: torch.Tensor) -> torch.Tensor:
        x = x.detach().cpu().double()
        x[:, PARAM_NAMES.index("ratio")] = x[:, PARAM_NAMES.index("ratio")].round()  # a whole number, also under clip
        rows, reasons = self.pool.simulate(designs(x.numpy()))
        for r in reasons:
            if r:
                key = r.split(":")[0]
                self.invalid_reasons[key] = self.invalid_reasons.get(key, 0) + 1
        out = torch.tensor([row[1:4] for row in rows], dtype=torch.float32).reshape(len(rows), 3)
        invalid = torch.tensor([row[0] < 0.5 for row in rows], dtype=torch.bool)
        out[invalid] = math.nan
        return out


@OBJECTIVES.register("opamp_fom")
class OpAmpFoM(Objective):
    """FoM of ``batch x 3`` [gain_db, ugbw_hz, phase_margin_deg]: ``1.2 |gain_dB| / 100 + 1.6 min(PM, 90) / 90 +
    10 UGBW / 1e9`` (higher is better; +90, not CktGNN's -90, so stable designs score higher; the cap: see
    :data:`.opamp_measure.PM_CAP_DEG`). NaN rows (invalid designs) give NaN, which the loop ranks last."""

    sense = "max"

    Config = OpAmpFoMConfig

    @classmethod
    def from_config(cls, config: Config, *, output_shape: tuple[int, ...]) -> OpAmpFoM:
        try:
            config.check_output_shape(tuple(output_shape))
        except FieldError as exc:  # built without a config's path to name (a config is checked before it is built)
            raise ConfigError(f"objective {exc}") from None
        return cls()

    def __call__(self, y: torch.Tensor) -> torch.Tensor:
        y = y.reshape(y.shape[0], 3)
        pm = y[:, 2].clamp(max=PM_CAP_DEG)
        return FOM_GAIN_PER_DB * y[:, 0].abs() + FOM_UGBW_PER_HZ * y[:, 1] + FOM_PM_PER_DEG * pm

