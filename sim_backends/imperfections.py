"""Bench imperfections: BlackBoxes around a BlackBox, so a dry run fails the way a bench fails.

Each wrapper is registered in :data:`hil.registry.WRAPPERS` and configured in
the ``blackbox.wrappers`` list (innermost first)::

    blackbox:
      type: owms_twin
      wrappers:
        - {type: slm_crosstalk, sigma_px: 0.6}       # SLM side: acts on the phases sent
        - {type: slm_phase_response, gamma: 1.15}
        - {type: slm_quantisation, bits: 8}
        - {type: drift, power_amplitude: 0.05}        # light side: laser power
        - {type: camera, bit_depth: 12, read_noise_e: 8}
        - {type: latency, settle_s: 0.01}

Input-side wrappers (SLM) transform ``x`` before the inner box sees it, and the
result stays inside the inner box's bounds. Output-side wrappers (drift,
camera) transform ``y``. Every wrapper also has a ``forward_differentiable``: the
noise-free expectation of its physics (quantisation passes gradients straight
through), so the ``exact`` estimator on a wrapped twin is the gradient of a
bench model that knows every imperfection.

Stochastic wrappers draw from their own seeded generator: the same seed and
the same sequence of queries give the same outputs.
"""

from __future__ import annotations

import math
import time
from dataclasses import replace
from typing import Any

import torch
from hil.sim_backends.imperfections_config import (  # noqa: F401  (re-exported)
    MAX_ELECTRONS_PER_UNIT,
    Bits,
    CameraConfig,
    Delay,
    DetectorRegionsConfig,
    DriftConfig,
    LatencyConfig,
    SLMCrosstalkConfig,
    SLMMacropixelsConfig,
    SLMPhaseResponseConfig,
    SLMQuantisationConfig,
    SLMSettlingConfig,
)

from hil.blackbox import BlackBox, BlackBoxWrapper, Delayed
from hil.config import FieldError, join
from hil.errors import ConfigError, DeviceError
from hil.registry import WRAPPERS
from hil.shapes import StaticSpec, static_spec_of

TWO_PI = 2 * math.pi
#: the largest mean electron count drawn from: past ~9.2e18 torch.poisson's int64 overflows (negative draws); a
#: mean that large saturates the camera for any gain_e_per_count up to 1e14
POISSON_CAP = 9e18


def _fit(name: str, config: Any, inner: BlackBox) -> StaticSpec:
    """``config.static_spec`` on the built BlackBox ``inner``: the check ``hil validate`` makes on the config, made
    once more on what is wrapped; its error names the wrapper (built without a config's path to name)."""
    try:
        return config.static_spec(static_spec_of(inner))
    except FieldError as exc:
        raise ConfigError(f"{join(name, exc.key) if exc.key else name}: {exc.detail}") from None


class _Wrapper(BlackBoxWrapper):
    """Shared plumbing: ``transform_input`` / ``transform_output`` used by both the measured and the
    differentiable path; the measured path may add noise (``noisy=True``)."""

    def __init__(self, inner: BlackBox, *, stochastic: bool = False) -> None:
        spec = replace(inner.spec, stochastic=inner.spec.stochastic or stochastic)
        super().__init__(inner, spec)

    def transform_input(self, x: torch.Tensor, differentiable: bool) -> torch.Tensor:
        return x

    def transform_output(self, y: torch.Tensor, noisy: bool) -> torch.Tensor:
        return y

    def _query(self, x: torch.Tensor) -> torch.Tensor:
        return self.transform_output(self.inner._query(self.transform_input(x, False)), True)

    def forward_differentiable(self, x: torch.Tensor) -> torch.Tensor:
        return self.transform_output(super().forward_differentiable(self.transform_input(x, True)), False)


def lut_drive(x: torch.Tensor, drive: torch.Tensor, phase: torch.Tensor, lower: float, period: float) -> torch.Tensor:
    """What an ``slm_lut`` correction sends for desired phases ``x`` (phases and drives: ``*_rad`` tables, see
    ``hil.calibration.corrections``); piecewise linear, differentiable in ``x``."""
    phase = phase - phase[0]
    want = torch.remainder(x - lower, period)
    reach = phase[-1]
    want = torch.where(want > reach, torch.where(want - reach < period - want, reach, phase[0]), want)
    idx = torch.searchsorted(phase, want.detach().contiguous(), right=True).clamp(1, len(phase) - 1)
    p0, p1, d0, d1 = phase[idx - 1], phase[idx], drive[idx - 1], drive[idx]
    t = ((want - p0) / (p1 - p0).clamp_min(1e-12)).clamp(0, 1)
    return d0 + t * (d1 - d0)


def _phase_range(inner: BlackBox) -> tuple[torch.Tensor, torch.Tensor]:
    return inner.spec.lower, inner.spec.upper


@WRAPPERS.register("slm_quantisation")
class SLMQuantisation(_Wrapper):
    """The SLM's drive has ``bits`` bits: phases snap to ``2^bits`` levels over one period of the bounds
    (``lower + n * period / 2^bits``); the top of the range wraps to the bottom, as phase does."""

    Config = SLMQuantisationConfig

    def __init__(self, inner: BlackBox, bits: int = 8) -> None:
        super().__init__(inner)
        self.bits = bits

    @classmethod
    def from_config(cls, config: Config, *, inner: BlackBox) -> SLMQuantisation:
        return cls(inner, config.bits)

    def transform_input(self, x: torch.Tensor, differentiable: bool) -> torch.Tensor:
        lower, upper = _phase_range(self.inner)
        levels = 2**self.bits
        step = (upper - lower) / levels
        q = lower + torch.remainder(torch.round((x - lower) / step), levels) * step
        return x + (q - x).detach() if differentiable else q  # straight-through on the differentiable path


@WRAPPERS.register("slm_phase_response")
class SLMPhaseResponse(_Wrapper):
    """A nonlinear, miscalibrated phase response: ``phase = lower + scale * period * (u ** gamma)`` with
    ``u = (x - lower) / period`` the commanded fraction of the range. ``gamma = 1, scale = 1`` is ideal;
    ``scale < 1`` is an SLM that does not reach a full 2 pi."""

    Config = SLMPhaseResponseConfig

    def __init__(self, inner: BlackBox, gamma: float = 1.0, scale: float = 1.0) -> None:
        super().__init__(inner)
        self.gamma, self.scale = gamma, scale

    @classmethod
    def from_config(cls, config: Config, *, inner: BlackBox) -> SLMPhaseResponse:
        return cls(inner, config.gamma, config.scale)

    def transform_input(self, x: torch.Tensor, differentiable: bool) -> torch.Tensor:
        lower, upper = _phase_range(self.inner)
        u = ((x - lower) / (upper - lower)).clamp(0, 1)
        if differentiable and self.gamma < 1:
            u = u.clamp_min(1e-6)  # d(u^gamma)/du is infinite at 0
        return lower + self.scale * (upper - lower) * u.pow(self.gamma)


@WRAPPERS.register("slm_crosstalk")
class SLMCrosstalk(_Wrapper):
    """Pixel crosstalk (fringing fields): the drive seen by each SLM pixel is a Gaussian blur, of
    ``sigma_px`` pixels, of the commanded drive. Needs a twin with an ``slm_shape`` (rows, cols)."""

    Config = SLMCrosstalkConfig

    def __init__(self, inner: BlackBox, sigma_px: float = 0.5) -> None:
        super().__init__(inner)
        self.slm_shape = _fit("slm_crosstalk", SLMCrosstalkConfig(sigma_px), inner).slm_shape
        self.sigma_px = sigma_px
        radius = max(1, int(math.ceil(3 * sigma_px)))
        t = torch.arange(-radius, radius + 1, dtype=torch.float32)
        k = torch.exp(-0.5 * (t / sigma_px) ** 2)
        self.kernel_1d = k / k.sum()

    @classmethod
    def from_config(cls, config: Config, *, inner: BlackBox) -> SLMCrosstalk:
        return cls(inner, config.sigma_px)

    def transform_input(self, x: torch.Tensor, differentiable: bool) -> torch.Tensor:
        rows, cols = self.slm_shape
        r = (len(self.kernel_1d) - 1) // 2
        img = x.reshape(-1, 1, rows, cols)
        img = torch.nn.functional.pad(img, (r, r, r, r), mode="replicate")  # the SLM's edge pixels see themselves
        k = self.kernel_1d.to(x.dtype)
        img = torch.nn.functional.conv2d(img, k.reshape(1, 1, 1, -1))
        img = torch.nn.functional.conv2d(img, k.reshape(1, 1, -1, 1))
        return img.reshape(x.shape[0], -1)  # a convex combination: stays inside the bounds


@WRAPPERS.register("drift")
class Drift(_Wrapper):
    """Slow drift with the number of queries ``n``: ``y -> (1 + power_amplitude * a(n)) * y + offset_amplitude * b(n)``.

    ``a`` and ``b`` are smooth in ``n`` (sums of four sinusoids, periods around ``period_queries``, random
    phases from ``seed``) with values in [-1, 1]: laser power and a dark-level / offset drift. Placed
    inside ``camera`` the power drift acts on the light; outside, the offset is in camera counts.
    """

    Config = DriftConfig

    def __init__(self, inner: BlackBox, config: Config) -> None:
        super().__init__(inner, stochastic=True)
        self.config = config
        gen = torch.Generator().manual_seed(config.seed)
        self._periods = config.period_queries * (0.5 + 1.5 * torch.rand(2, 4, generator=gen, dtype=torch.float64))
        self._phases = TWO_PI * torch.rand(2, 4, generator=gen, dtype=torch.float64)
        self.queries_seen = 0

    @classmethod
    def from_config(cls, config: Config, *, inner: BlackBox) -> Drift:
        return cls(inner, config)

    def factors(self, n: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Power factor and offset at query indices ``n`` (``batch``), each ``batch``."""
        w = torch.sin(TWO_PI * n.to(torch.float64)[:, None, None] / self._periods + self._phases).mean(dim=2)
        power = 1 + self.config.power_amplitude * w[:, 0]
        offset = self.config.offset_amplitude * w[:, 1]
        return power.to(torch.float32), offset.to(torch.float32)

    def transform_output(self, y: torch.Tensor, noisy: bool) -> torch.Tensor:
        if not noisy:
            return y  # the differentiable model is the drift-free bench
        n = torch.arange(self.queries_seen, self.queries_seen + y.shape[0])
        self.queries_seen += y.shape[0]
        power, offset = self.factors(n)
        shape = (-1,) + (1,) * (y.ndim - 1)
        return y * power.reshape(shape) + offset.reshape(shape)


@WRAPPERS.register("camera")
class Camera(_Wrapper):
    """A camera: the inner box's output is power fraction per pixel; the output is counts.

    electrons = Poisson(y * photons_per_s * exposure_s * quantum_efficiency) (shot noise, if on)
              + Normal(0, read_noise_e);
    counts = clip(round(electrons / gain_e_per_count + dark_level_counts), 0, 2^bit_depth - 1).
    Saturation is the clip at ``2^bit_depth - 1``. The differentiable model is the noise-free mean with
    the same clip (no gradient through saturated pixels, as on the bench) and no rounding.
    """

    Config = CameraConfig

    def __init__(self, inner: BlackBox, config: Config) -> None:
        super().__init__(inner, stochastic=config.shot_noise or config.read_noise_e > 0)
        self.config = config
        self.max_counts = float(2**config.bit_depth - 1)
        self._gen = torch.Generator().manual_seed(config.seed)

    @classmethod
    def from_config(cls, config: Config, *, inner: BlackBox) -> Camera:
        return cls(inner, config)

    #: the exposures a calibration may set (s): the camera's declared limits
    exposure_bounds_s = (1e-6, 10.0)

    @property
    def full_scale_counts(self) -> float:
        return self.max_counts

    def get_exposure_s(self) -> float:
        return self.config.exposure_s

    def set_exposure_s(self, exposure_s: float) -> None:
        lo, hi = self.exposure_bounds_s
        if not (lo <= exposure_s <= hi):
            raise DeviceError(f"camera: exposure {exposure_s:.6g} s is outside the camera's [{lo:g}, {hi:g}] s")
        self.config = replace(self.config, exposure_s=float(exposure_s))

    def electrons_per_unit(self) -> float:
        c = self.config
        return c.photons_per_s * c.exposure_s * c.quantum_efficiency

    def transform_output(self, y: torch.Tensor, noisy: bool) -> torch.Tensor:
        c = self.config
        electrons = y.clamp_min(0) * self.electrons_per_unit()
        if noisy:
            if c.shot_noise:
                electrons = torch.poisson(electrons.clamp(max=POISSON_CAP), generator=self._gen)
            if c.read_noise_e > 0:
                electrons = electrons + c.read_noise_e * torch.randn(electrons.shape, generator=self._gen)
        counts = electrons / c.gain_e_per_count + c.dark_level_counts
        if noisy:
            counts = torch.round(counts)
        return counts.clamp(0, self.max_counts)


@WRAPPERS.register("latency")
class Latency(Delayed):
    """Bench timing: each query (one SLM frame) waits ``settle_s`` for the SLM to settle plus
    ``exposure_s`` for the camera; each batch adds ``per_batch_s`` (transfer, triggering)."""

    Config = LatencyConfig

    @classmethod
    def from_config(cls, config: Config, *, inner: BlackBox) -> Latency:
        return cls(inner, config.settle_s + config.exposure_s, config.per_batch_s)


@WRAPPERS.register("slm_settling")
class SLMSettling(_Wrapper):
    """A liquid-crystal SLM follows a new drive with time constant ``tau_s``: each query row is one frame,
    grabbed after the rig waits ``settle_s`` and then exposes for ``frame_s``, and it sees the drive
    ``d <- d + (x - d) * (1 - exp(-(settle_s + frame_s) / tau_s))`` (the SLM keeps its state between queries).
    With too short a wait, frames lag the pattern sent. ``time_scale`` scales the real sleep of each row
    (0: simulated time only). The differentiable model is the settled SLM. ``settle_s`` is the rig's
    setting that the settle calibration chooses (``set_settle_s``)."""

    Config = SLMSettlingConfig

    def __init__(self, inner: BlackBox, config: Config) -> None:
        # the same pattern is answered differently after different predecessors: to an optimiser (and to the
        # conformance checks) that is an answer that varies, as noise does; the model is the settled SLM
        super().__init__(inner, stochastic=True)
        self.config = config
        self.drive: torch.Tensor | None = None  # what the SLM shows now (d_in), None before the first frame

    @classmethod
    def from_config(cls, config: Config, *, inner: BlackBox) -> SLMSettling:
        return cls(inner, config)

    def get_settle_s(self) -> float:
        return self.config.settle_s

    def set_settle_s(self, settle_s: float) -> None:
        if not (0 <= settle_s <= 100):
            raise DeviceError(f"slm_settling: settle time {settle_s:.6g} s is outside [0, 100] s")
        self.config = replace(self.config, settle_s=float(settle_s))

    def transform_input(self, x: torch.Tensor, differentiable: bool) -> torch.Tensor:
        if differentiable:
            return x
        c = self.config
        alpha = 1.0 - math.exp(-(c.settle_s + c.frame_s) / c.tau_s)
        rows = []
        drive = x[0] if self.drive is None else self.drive
        for row in x:
            drive = drive + (row - drive) * alpha
            rows.append(drive)
        if c.time_scale > 0:
            time.sleep(c.time_scale * (c.settle_s + c.frame_s) * x.shape[0])
        self.drive = drive.clone()
        return torch.stack(rows)


# -- rig geometry: coarser SLM control and detector readout ------------------------------------------------


@WRAPPERS.register("slm_macropixels")
class SLMMacropixels(_Wrapper):
    """Drive the SLM in ``blocks = [rows, cols]`` macro-pixels: input ``batch x rows*cols`` phases, each
    copied onto its block of SLM pixels (the SLM's shape must divide evenly). Put it last (outermost)."""

    Config = SLMMacropixelsConfig

    def __init__(self, inner: BlackBox, blocks: list[int]) -> None:
        shape = _fit("slm_macropixels", SLMMacropixelsConfig(list(blocks)), inner).slm_shape
        rows, cols = blocks
        self.blocks, self.block_px = (rows, cols), (shape[0] // rows, shape[1] // cols)
        self.input_image_shape = self.blocks  # the input seen as an image (reports): one value per macro-pixel
        lo, hi = float(inner.spec.lower.min()), float(inner.spec.upper.max())
        super().__init__(inner)
        self.spec = replace(inner.spec, input_dim=rows * cols, lower=torch.full((rows * cols,), lo),
                            upper=torch.full((rows * cols,), hi), scale="linear", integer=False)

    @classmethod
    def from_config(cls, config: Config, *, inner: BlackBox) -> SLMMacropixels:
        return cls(inner, config.blocks)

    def transform_input(self, x: torch.Tensor, differentiable: bool) -> torch.Tensor:
        rows, cols = self.blocks
        img = x.reshape(-1, rows, cols)
        img = img.repeat_interleave(self.block_px[0], dim=1).repeat_interleave(self.block_px[1], dim=2)
        return img.reshape(x.shape[0], -1)


@WRAPPERS.register("detector_regions")
class DetectorRegions(_Wrapper):
    """Read a camera image out as the summed signal of a ``grid = [rows, cols]`` of equal regions
    (dark level removed): output ``batch x rows*cols``. The camera's shape must divide evenly."""

    Config = DetectorRegionsConfig

    def __init__(self, inner: BlackBox, grid: list[int]) -> None:
        _fit("detector_regions", DetectorRegionsConfig(list(grid)), inner)
        shape = inner.spec.output_shape
        self.grid, self.region_px = tuple(grid), (shape[0] // grid[0], shape[1] // grid[1])
        super().__init__(inner)
        self.spec = replace(inner.spec, output_shape=(grid[0] * grid[1],))
        box: BlackBox | None = inner
        while box is not None and not isinstance(box, Camera):
            box = getattr(box, "inner", None)
        self.dark_counts = box.config.dark_level_counts if box is not None else 0.0

    @classmethod
    def from_config(cls, config: Config, *, inner: BlackBox) -> DetectorRegions:
        return cls(inner, config.grid)

    def transform_output(self, y: torch.Tensor, noisy: bool) -> torch.Tensor:
        pooled = torch.nn.functional.avg_pool2d((y - self.dark_counts).unsqueeze(1), self.region_px)
        return pooled.reshape(y.shape[0], -1) * (self.region_px[0] * self.region_px[1])
