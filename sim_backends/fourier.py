"""Fourier twin: an SLM in the focal plane of a lens, its far field on a camera (``type: fourier_twin``).

It is the optics of slmsuite's simulated pair (``SimulatedSLM`` + ``SimulatedCamera`` with no affine map), as
the SLM + camera rig (``type: slm_camera_rig``) reads it out, computed in torch (batched, differentiable in
the phases, any device), so it is a model twin of that rig and of a real Fourier setup like it:

1. the macro-pixel phases ``x`` (``blocks``) are repeated over the SLM's pixels;
2. the SLM shows them as ``2**slm_bitdepth`` display levels (slmsuite's ``_phase2gray``: ``display =
   (rint(-x L / 2pi) - 1) mod L``), and the light leaves with phase ``display * (-2 pi / L)`` minus its minimum
   (gradients pass straight through the levels); ``gamma`` and ``scale`` bend the response as a real SLM's
   does (``phase -> scale * 2 pi * (phase / 2 pi) ** gamma``; 1 and 1 are slmsuite's ideal SLM);
3. the field ``exp(i psi)`` (amplitude 1 per pixel, as slmsuite renders it: a flat phase puts
   ``rows * cols`` units of power on the zero order) goes to the far field by ``fftshift(fft2(fftshift(u),
   norm="ortho"))``, evaluated only at the ROI's frequencies (two small matrix products);
4. the camera counts ``|E|^2 * exposure_s * gain``, clipped to ``2**camera_bitdepth - 1`` and truncated to
   integers (``readout: true``, as slmsuite's camera does; gradients pass straight through), on the ROI,
   summed over ``regions`` if given.

Checked against the rig on slmsuite's simulated pair: identical answers after the readout
(``tests/test_fourier.py``). The rig clips its inputs to ``[0, 2 pi]``; so does this twin's declared bounds.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
from hil.sim_backends.fourier_config import MAX_COUNTS_PER_INTENSITY, FourierTwinConfig, Side  # noqa: F401
from torch import nn

from hil.blackbox import BlackBox, BlackBoxSpec
from hil.device import resolve_device
from hil.errors import CalibrationError, ConfigError
from hil.registry import BLACKBOXES, TWIN_MODELS

TWO_PI = 2 * math.pi


class _StraightThrough(torch.autograd.Function):
    """Forward ``target``, backward the identity onto ``source`` (``target`` is a function of ``source``
    equal to it up to a constant / a rounding)."""

    @staticmethod
    def forward(ctx: Any, source: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return target.detach().clone()

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        return grad, None


def display_levels(x: torch.Tensor, bitdepth: int = 8) -> torch.Tensor:
    """slmsuite's ``SLM._phase2gray`` for ``phase_scaling == 1`` and no LUT: float32 phases (rad) -> the
    integer display levels (returned as float32 integers in ``[0, 2**bitdepth)``)."""
    levels = 2 ** int(bitdepth)
    factor = torch.tensor(-levels / TWO_PI, dtype=torch.float32, device=x.device)  # _gamma_sign * L / 2pi
    return torch.remainder(torch.round(x.to(torch.float32) * factor) - 1, levels)  # round = np.rint (half-even)


def slm_phase(x: torch.Tensor, bitdepth: int = 8, quantise: bool = True, gamma: Any = 1.0,
              scale: Any = 1.0) -> torch.Tensor:
    """Phases (rad) -> the phase the SLM gives the light: ``-2 pi * scale * (display / L) ** gamma`` of the display
    level slmsuite shows for them (with ``gamma = scale = 1``, ``x`` rounded to the levels, up to a global
    constant, which the intensity ignores). Gradients pass straight through the levels' rounding."""
    levels = 2 ** int(bitdepth)
    x = x.to(torch.float32)
    continuous = torch.remainder(x * (-levels / TWO_PI) - 1, levels)
    shown = display_levels(x, bitdepth) if quantise else continuous
    display = continuous + (shown - continuous).detach()
    return -TWO_PI * scale * (display / levels).clamp_min(1e-9) ** gamma


def _floor_ste(c: torch.Tensor) -> torch.Tensor:
    return _StraightThrough.apply(c, torch.floor(c))


class FourierRig(nn.Module):
    """``batch x n_phases`` (rad) -> ``batch x roi_h x roi_w`` counts (or ``batch x regions``), as the
    ``slm_camera_rig`` answers on slmsuite's simulated SLM and camera (see the module docstring).

    Parameters mirror the rig's config: ``slm_shape`` (rows, cols), ``blocks`` (macro-pixels, or None),
    ``roi`` ([y0, x0, h, w] on the camera frame), ``regions`` ([r, q] or None), ``exposure_s``, and the
    simulated devices': ``camera_shape`` (rows, cols; default the SLM's), ``gain`` (1), ``slm_bitdepth`` (8),
    ``camera_bitdepth`` (8). ``quantise_phase``: model the SLM's display levels (default True).
    """

    def __init__(self, slm_shape: Sequence[int] = (60, 60), *, blocks: Sequence[int] | None = None,
                 roi: Sequence[int] | None = None, regions: Sequence[int] | None = None,
                 exposure_s: float = 1.0, gain: float = 1.0, camera_shape: Sequence[int] | None = None,
                 slm_bitdepth: int = 8, camera_bitdepth: int = 8, quantise_phase: bool = True,
                 method: str = "dft") -> None:
        super().__init__()
        self.slm_shape = (int(slm_shape[0]), int(slm_shape[1]))
        self.camera_shape = self.slm_shape if camera_shape is None else (int(camera_shape[0]), int(camera_shape[1]))
        ny, nx = self.slm_shape
        hc, wc = self.camera_shape
        if hc > ny or wc > nx:
            raise ValueError(f"camera {list(self.camera_shape)} larger than the far field {list(self.slm_shape)}: "
                             "slmsuite's unpad refuses it (give an affine, which this model does not cover)")
        self.blocks = (ny, nx) if blocks is None else (int(blocks[0]), int(blocks[1]))
        if ny % self.blocks[0] or nx % self.blocks[1]:
            raise ValueError(f"blocks {list(self.blocks)} must divide slm_shape {list(self.slm_shape)}")
        self.roi = (0, 0, hc, wc) if roi is None else tuple(int(v) for v in roi)
        y0, x0, h, w = self.roi
        if y0 < 0 or x0 < 0 or y0 + h > hc or x0 + w > wc:
            raise ValueError(f"roi {list(self.roi)} does not fit the camera's {list(self.camera_shape)} frame")
        self.regions = None if regions is None else (int(regions[0]), int(regions[1]))
        if self.regions and (h % self.regions[0] or w % self.regions[1]):
            raise ValueError(f"regions {list(self.regions)} must divide the roi's {h} x {w}")
        if method not in ("dft", "fft"):
            raise ValueError(f"method must be 'dft' or 'fft', got {method!r}")
        self.method = method
        self.exposure_s, self.gain = float(exposure_s), float(gain)
        self.slm_bitdepth, self.camera_bitdepth = int(slm_bitdepth), int(camera_bitdepth)
        self.quantise_phase = bool(quantise_phase)
        self.full_scale = float(2 ** self.camera_bitdepth - 1)
        # unpad's centred crop of the N far-field pixels to the camera's H, then the ROI
        self.crop = ((ny - hc) // 2 + y0, (nx - wc) // 2 + x0)
        self.register_buffer("a_y", self._dft_matrix(ny, self.blocks[0], self.crop[0], h), persistent=False)
        self.register_buffer("a_x", self._dft_matrix(nx, self.blocks[1], self.crop[1], w), persistent=False)

    @staticmethod
    def _dft_matrix(n: int, n_blocks: int, first: int, count: int) -> torch.Tensor:
        """``count x n_blocks``: row ``i`` holds, for each macro-pixel, the ortho DFT weight
        ``sum_{pixels p of the block} exp(-2 pi i k p / n) / sqrt(n)`` of the frequency
        ``k = first + i - n // 2`` that fftshift puts on the (cropped) camera row ``i``."""
        k = torch.arange(count, dtype=torch.float64) + first - n // 2
        p = torch.arange(n, dtype=torch.float64)
        m = torch.exp(-2j * math.pi * torch.outer(k, p) / n) / math.sqrt(n)
        return m.reshape(count, n_blocks, n // n_blocks).sum(dim=2).to(torch.complex64)

    # -- the physics ------------------------------------------------------------------------------------------
    def phase(self, x: torch.Tensor, gamma: Any = 1.0, scale: Any = 1.0) -> torch.Tensor:
        """``batch x n`` -> ``batch x br x bc`` realised macro-pixel phases (every SLM pixel of a block shows
        the same level, so quantising the blocks is quantising the pattern)."""
        return slm_phase(x.reshape(-1, *self.blocks), self.slm_bitdepth, self.quantise_phase, gamma, scale)

    def field(self, x: torch.Tensor, gamma: Any = 1.0, scale: Any = 1.0) -> torch.Tensor:
        """``batch x roi_h x roi_w`` complex64 far field on the ROI (ortho DFT; a global phase aside)."""
        psi = self.phase(x, gamma, scale)
        u = torch.polar(torch.ones_like(psi), psi)  # amplitude_sim = 1 per pixel, not normalised
        if self.method == "dft":
            return self.a_y @ u @ self.a_x.transpose(0, 1)
        ny, nx = self.slm_shape
        u = u.repeat_interleave(ny // self.blocks[0], 1).repeat_interleave(nx // self.blocks[1], 2)
        ff = torch.fft.fftshift(torch.fft.fft2(torch.fft.fftshift(u, dim=(-2, -1)), norm="ortho"), dim=(-2, -1))
        y, x0 = self.crop
        return ff[:, y: y + self.roi[2], x0: x0 + self.roi[3]]

    def intensity(self, x: torch.Tensor, gamma: Any = 1.0, scale: Any = 1.0) -> torch.Tensor:
        """``batch x roi_h x roi_w`` far-field intensity ``|E|^2`` (SimulatedCamera.render() on the ROI)."""
        return self.field(x, gamma, scale).abs().square()

    def counts(self, intensity: torch.Tensor, gain: Any, readout: bool) -> torch.Tensor:
        """Intensity (``batch x h x w``) -> the camera's counts on the ROI or its regions."""
        counts = intensity * (self.exposure_s * gain)
        if readout:
            counts = _floor_ste(counts.clamp(0.0, self.full_scale))
        if self.regions:
            r, q = self.regions
            n, h, w = counts.shape
            counts = counts.reshape(n, r, h // r, q, w // q).sum(dim=(2, 4)).reshape(n, r * q)
        return counts

    def forward(self, x: torch.Tensor, readout: bool = False, gamma: Any = 1.0, scale: Any = 1.0,
                gain: Any = None) -> torch.Tensor:
        """Counts on the ROI (``batch x h x w``) or region sums (``batch x r*q``): ``|E|^2 * exposure * gain``;
        ``readout=True`` also applies the camera's clip to ``[0, 2**bitdepth - 1]`` and integer truncation
        per pixel (straight-through floor), before the region sums, as the rig does."""
        intensity = self.intensity(x.reshape(-1, x.shape[-1]), gamma, scale)
        return self.counts(intensity, self.gain if gain is None else gain, readout)


@BLACKBOXES.register("fourier_twin")
class FourierTwin(BlackBox):
    """``batch x n_phases`` (rad, in ``[0, 2 pi]``) -> ``batch x roi_h x roi_w`` counts, or ``batch x regions``."""

    Config = FourierTwinConfig

    def __init__(self, config: Config) -> None:
        c = self.config = config
        try:
            self.optics = FourierRig(c.slm_shape, blocks=c.blocks, roi=c.roi, regions=c.regions,
                                     exposure_s=c.exposure_s, gain=c.gain, camera_shape=c.camera_shape,
                                     slm_bitdepth=c.slm_bitdepth, camera_bitdepth=c.camera_bitdepth)
        except ValueError as exc:
            raise ConfigError(f"fourier_twin: {exc}") from None
        self.device = resolve_device(c.device, "device")
        self.optics.to(self.device)
        n = self.optics.blocks[0] * self.optics.blocks[1]
        out = (self.optics.regions[0] * self.optics.regions[1],) if self.optics.regions else tuple(self.optics.roi[2:])
        super().__init__(BlackBoxSpec(name="fourier_twin", input_dim=n, lower=torch.zeros(n),
                                      upper=torch.full((n,), TWO_PI), output_shape=out, out_of_bounds=c.out_of_bounds))
        self.slm_shape = tuple(self.optics.slm_shape)
        self.input_image_shape = tuple(self.optics.blocks)

    @classmethod
    def from_config(cls, config: Config) -> FourierTwin:
        return cls(config)

    def forward_differentiable(self, x: torch.Tensor) -> torch.Tensor:
        c = self.config
        y = self.optics(x.to(self.device), readout=c.readout, gamma=c.gamma, scale=c.scale)
        return y.to(x.device)

    def _query(self, x: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return self.forward_differentiable(x)


#: the fitted parameters of the Fourier twin: (unit of the fit's coordinate, values)
FOURIER_PARAMETERS: dict[str, tuple[float, int]] = {"gamma": (0.1, 1), "scale": (0.1, 1), "gain": (0.1, 1)}


class FourierParametric(nn.Module):
    """The Fourier twin as a function of its SLM response (``gamma``, ``scale``) and camera ``gain`` (twin fit).
    Each moves as ``nominal * exp(unit * theta / nominal)``: positive, and a unit step near the start. The
    readout's clip and truncation stay (straight-through), so fit data may include saturated pixels."""

    def __init__(self, section: dict[str, Any], fit: tuple[str, ...] | None = None) -> None:
        super().__init__()
        from hil.config import parse

        options = {k: v for k, v in section.items() if k not in ("type", "wrappers")}
        if section.get("wrappers"):
            raise CalibrationError("the twin fit models a fourier_twin without wrappers")
        self.section = dict(section)
        self.cfg = parse(FourierTwin.Config, options, "model")
        self.twin = FourierTwin(self.cfg)
        self.fit = tuple(fit) if fit is not None else tuple(FOURIER_PARAMETERS)
        unknown = [p for p in self.fit if p not in FOURIER_PARAMETERS]
        if unknown:
            raise CalibrationError(f"cannot fit {unknown[0]!r}; the fourier_twin model has "
                                   f"{', '.join(FOURIER_PARAMETERS)}")
        self.nominal = {k: torch.tensor([float(getattr(self.cfg, k))], dtype=torch.float64) for k in FOURIER_PARAMETERS}
        self.theta = nn.Parameter(torch.zeros(len(self.fit), dtype=torch.float64))

    def parameter_shape(self, name: str) -> tuple[float, int]:
        return FOURIER_PARAMETERS[name]

    def values(self, theta: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        theta = self.theta if theta is None else theta
        out = dict(self.nominal)
        for i, name in enumerate(self.fit):
            out[name] = self.nominal[name] * torch.exp(theta[i: i + 1] * FOURIER_PARAMETERS[name][0]
                                                       / self.nominal[name])
        return out

    def uncertainties(self, theta: torch.Tensor, sigma_theta: torch.Tensor) -> dict[str, list[float]]:
        v = self.values(theta)
        return {name: (sigma_theta[i: i + 1] * FOURIER_PARAMETERS[name][0] * v[name].detach()
                       / self.nominal[name]).tolist() for i, name in enumerate(self.fit)}

    def start_readout(self, x: torch.Tensor, y: torch.Tensor) -> None:
        """The gain from a regression of the answers on the nominal counts (through the origin)."""
        with torch.no_grad():
            pred = self(x, torch.zeros_like(self.theta)).reshape(-1)
            target = y.to(torch.float64).reshape(-1)
            ok = torch.ones_like(target, dtype=torch.bool)
            if not self.cfg.regions:  # saturated pixels say nothing about the gain
                ok = target < 0.98 * self.twin.optics.full_scale
            ratio = float((pred[ok] * target[ok]).sum() / (pred[ok] * pred[ok]).sum().clamp_min(1e-30))
        if math.isfinite(ratio) and ratio > 0:
            self.nominal["gain"] = self.nominal["gain"] * ratio

    def forward(self, x: torch.Tensor, theta: torch.Tensor | None = None) -> torch.Tensor:
        v = self.values(theta)
        y = self.twin.optics(x.to(torch.float32), readout=self.cfg.readout, gamma=v["gamma"].float(),
                             scale=v["scale"].float(), gain=v["gain"].float())
        return y.to(torch.float64)

    def fitted_section(self, noise: Any = None, rig: Any = None) -> dict[str, Any]:
        v = {k: t.detach() for k, t in self.values().items()}
        out = dict(self.section)
        out.update({k: round(float(v[k][0]), 6) for k in FOURIER_PARAMETERS})
        out["gamma"] = min(max(out["gamma"], 0.2), 5.0)
        out["scale"] = min(max(out["scale"], 1e-3), 1.5)
        return out


@TWIN_MODELS.register("fourier_twin")
def fourier_model(section: dict[str, Any], fit: tuple[str, ...] | None = None) -> FourierParametric:
    return FourierParametric(section, fit)
