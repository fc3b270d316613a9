"""The OWMS twin as a differentiable function of its physical parameters, for fitting a twin to a bench.

:class:`OWMSParametric` computes what an ``owms_twin`` section (with its SLM and readout wrappers) answers,
as a torch function of: ``distance_m``, ``waist_m``, ``beam_offset_m`` (2), ``camera_offset_m`` (2), the SLM's
phase response ``gamma`` and ``scale``, its crosstalk ``crosstalk_sigma_px``, and the readout's ``gain``
(counts per unit of power fraction) and ``offset`` (counts). The beam and the Rayleigh-Sommerfeld (DIM)
impulse response are rebuilt from the parameters on every call, so gradients reach the geometry; at the
section's own values it reproduces the twin (checked against TorchOptics in the tests).

Wrappers understood: ``slm_crosstalk``, ``slm_phase_response``, ``camera`` (its noise-free mean, without the
clip: fit unsaturated data), ``detector_regions``, ``slm_macropixels``, and the corrections calibrations put
on a rig (``slm_lut``, ``dark_subtraction``; ``frame_average`` changes only the noise); ``slm_quantisation``,
``drift``, ``latency`` and ``slm_settling`` are left out (no effect on a settled, averaged answer). Registered in
:data:`hil.registry.TWIN_MODELS` as ``owms_twin``.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Mapping
from typing import Any

import torch
from hil.sim_backends.imperfections import lut_drive
from hil.sim_backends.owms import OWMSTwin, dim_camera_field
from torch import nn

from hil.config import parse
from hil.errors import CalibrationError
from hil.registry import TWIN_MODELS

TWO_PI = 2 * math.pi
IGNORED = ("slm_quantisation", "drift", "latency", "slm_settling", "frame_average")
#: parameters that must stay positive: moved as nominal * exp(step / nominal) (the same first-order step)
POSITIVE = ("distance_m", "waist_m", "gamma", "scale", "crosstalk_sigma_px", "gain")
#: corrections of calibration records on a rig: the fitted twin keeps them, so it maps what the corrected rig maps
CORRECTIONS = ("slm_lut", "dark_subtraction", "frame_average")

#: parameter -> (unit of the normalised coordinate the fit moves in (None: 10 % of its start), how many values)
PARAMETERS: dict[str, tuple[float, int]] = {
    "distance_m": (1e-3, 1), "waist_m": (1e-5, 1), "beam_offset_m": (1e-5, 2), "camera_offset_m": (1e-5, 2),
    "gamma": (0.1, 1), "scale": (0.1, 1), "crosstalk_sigma_px": (0.1, 1), "gain": (None, 1), "offset": (1.0, 1),
}


def centred_axis(n: int, pitch: float, offset: torch.Tensor) -> torch.Tensor:
    """``n`` grid points of ``pitch`` centred on ``offset`` (TorchOptics' grid)."""
    return (torch.arange(n, dtype=torch.float64) - (n - 1) / 2) * pitch + offset


def gaussian_beam(shape: tuple[int, int], pitch: float, waist: torch.Tensor, offset: torch.Tensor) -> torch.Tensor:
    """``rows x cols`` complex Gaussian beam at its waist, unit power on the grid (``offset``: rows, cols)."""
    x = centred_axis(shape[0], pitch, torch.zeros(()))[:, None] - offset[0]
    y = centred_axis(shape[1], pitch, torch.zeros(()))[None, :] - offset[1]
    amp = torch.exp(-(x**2 + y**2) / waist**2)
    amp = amp / amp.square().sum().sqrt()
    return amp.to(torch.complex128)


def dim_kernel(slm_shape: tuple[int, int], out_shape: tuple[int, int], pitch: float, wavelength: float,
               distance: torch.Tensor, camera_offset: torch.Tensor) -> torch.Tensor:
    """The Rayleigh-Sommerfeld impulse response between the SLM grid and the camera's sample grid, as
    TorchOptics' ``calculate_impulse_response(..., "DIM")`` computes it, differentiable in its arguments."""
    n0, n1 = slm_shape
    m0, m1 = out_shape
    f0, f1 = (n0 - 1) / 2 * pitch, (n1 - 1) / 2 * pitch
    p0, p1 = (m0 - 1) / 2 * pitch, (m1 - 1) / 2 * pitch
    x = torch.linspace(0, 1, n0 + m0 - 1, dtype=torch.float64) * (2 * p0 + 2 * f0) + (camera_offset[0] - p0 - f0)
    y = torch.linspace(0, 1, n1 + m1 - 1, dtype=torch.float64) * (2 * p1 + 2 * f1) + (camera_offset[1] - p1 - f1)
    xx, yy = x[:, None], y[None, :]
    k = TWO_PI / wavelength
    r2 = xx**2 + yy**2 + distance**2
    r = r2.sqrt()
    return (1 / TWO_PI) * (1 / r - 1j * k) * torch.exp(1j * k * r) * distance / r2 * pitch**2


class OWMSParametric(nn.Module):
    """``batch x d_in`` (the section's inputs) -> ``batch x *output_shape``, differentiable in the parameters."""

    def __init__(self, section: Mapping[str, Any], fit: tuple[str, ...] | None = None) -> None:
        super().__init__()
        self.section = copy.deepcopy(dict(section))
        options = {k: v for k, v in self.section.items() if k not in ("type", "wrappers")}
        cfg = parse(OWMSTwin.Config, options, "model")
        self.cfg = cfg
        self.slm_shape = tuple(cfg.slm_shape)
        b = cfg.binning
        self.out_shape = (cfg.camera_shape[0] * b, cfg.camera_shape[1] * b)
        self.blocks: tuple[int, int] | None = None
        self.grid: tuple[int, int] | None = None
        self.lut: tuple[torch.Tensor, torch.Tensor] | None = None
        self.dark: torch.Tensor | None = None
        gamma, scale, sigma, gain, offset = 1.0, 1.0, 0.0, 1.0, 0.0
        self.has_camera = False
        for w in self.section.get("wrappers") or []:
            kind = w.get("type")
            if kind == "slm_macropixels":
                self.blocks = tuple(w.get("blocks", [10, 10]))
            elif kind == "detector_regions":
                self.grid = tuple(w.get("grid", [4, 4]))
            elif kind == "slm_phase_response":
                gamma, scale = float(w.get("gamma", 1.0)), float(w.get("scale", 1.0))
            elif kind == "slm_crosstalk":
                sigma = float(w.get("sigma_px", 0.5))
            elif kind == "camera":
                from hil.sim_backends.imperfections import Camera

                cam = parse(Camera.Config, {k: v for k, v in w.items() if k != "type"}, "model.camera")
                gain = cam.photons_per_s * cam.exposure_s * cam.quantum_efficiency / cam.gain_e_per_count
                offset = 0.0 if self.grid is not None else cam.dark_level_counts
                self.has_camera = True
            elif kind == "slm_lut":  # a calibration's lookup table on the rig: the model sends the same drives
                self.lut = (torch.tensor(w["drive_rad"], dtype=torch.float32),
                            torch.tensor(w["phase_rad"], dtype=torch.float32))
            elif kind == "dark_subtraction":
                self.dark = torch.tensor(w.get("dark_counts", [0.0]), dtype=torch.float64)
            elif kind not in IGNORED:
                raise CalibrationError(f"the twin fit cannot model a {kind!r} wrapper on owms_twin")
        self.fit = tuple(fit) if fit is not None else tuple(PARAMETERS)
        unknown = [p for p in self.fit if p not in PARAMETERS]
        if unknown:
            raise CalibrationError(f"cannot fit {unknown[0]!r}; the owms_twin model has {', '.join(PARAMETERS)}")
        init = {"distance_m": [cfg.distance_m], "waist_m": [cfg.waist_m], "beam_offset_m": list(cfg.beam_offset_m),
                "camera_offset_m": list(cfg.camera_offset_m), "gamma": [gamma], "scale": [scale],
                "crosstalk_sigma_px": [max(sigma, 0.3)], "gain": [gain], "offset": [offset]}
        self.nominal = {k: torch.tensor(v, dtype=torch.float64) for k, v in init.items()}
        self.had_crosstalk = sigma > 0
        self.theta = nn.Parameter(torch.zeros(sum(PARAMETERS[p][1] for p in self.fit), dtype=torch.float64))

    # -- parameters ---------------------------------------------------------------------------------------
    def values(self, theta: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """Every parameter's physical value (the fitted ones moved by ``theta``)."""
        theta = self.theta if theta is None else theta
        out, i = dict(self.nominal), 0
        for name in self.fit:
            unit, n = self.parameter_shape(name)
            step = theta[i: i + n] * unit
            if name in POSITIVE:  # a relative step: the value stays positive, whatever the optimiser tries
                out[name] = self.nominal[name] * torch.exp(step / self.nominal[name].abs().clamp_min(1e-30))
            else:
                out[name] = self.nominal[name] + step
            i += n
        return out

    def parameter_shape(self, name: str) -> tuple[float, int]:
        """(the unit of ``theta`` for parameter ``name``, its number of values)."""
        unit, n = PARAMETERS[name]
        return (0.1 * float(self.nominal[name].abs().max()) if unit is None else unit), n

    def uncertainties(self, theta: torch.Tensor, sigma_theta: torch.Tensor) -> dict[str, list[float]]:
        """Standard deviations of the fitted parameters, from those of ``theta`` (first order)."""
        values, out, i = self.values(theta), {}, 0
        for name in self.fit:
            unit, n = self.parameter_shape(name)
            s = sigma_theta[i: i + n] * unit
            if name in POSITIVE:
                s = s * values[name].detach() / self.nominal[name].abs().clamp_min(1e-30)
            out[name] = s.tolist()
            i += n
        return out

    def start_readout(self, x: torch.Tensor, y: torch.Tensor) -> None:
        """Start the readout's gain and offset from a linear regression of the answers ``y`` on the nominal
        power (the geometry's fit needs the right counts scale to start from)."""
        with torch.no_grad():
            zero = torch.zeros_like(self.theta)
            v = self.values(zero)
            power = self.readout(self.power(x, zero).to(torch.float64)).reshape(len(x), -1)
            fixed = self(x, zero).reshape(len(x), -1) - (v["gain"] * power + v["offset"])  # e.g. minus a dark frame
            a = torch.stack([power.reshape(-1), torch.ones(power.numel(), dtype=power.dtype)], dim=1)
            target = (y.to(torch.float64).reshape(len(x), -1) - fixed).reshape(-1, 1)
            coef = torch.linalg.lstsq(a, target).solution.reshape(-1)
        self.nominal["gain"] = coef[0].abs().clamp_min(1e-30).reshape(1).detach()
        self.nominal["offset"] = coef[1].reshape(1).detach()

    # -- the physics --------------------------------------------------------------------------------------
    def power(self, x: torch.Tensor, theta: torch.Tensor | None = None) -> torch.Tensor:
        """Power fraction per camera pixel (``batch x cam_rows x cam_cols``), before the readout."""
        v = self.values(theta)
        rows, cols = self.slm_shape
        phase = x.to(torch.float32)
        if self.lut is not None:
            phase = lut_drive(phase, *self.lut, 0.0, TWO_PI)
        if self.blocks is not None:
            br, bc = self.blocks
            phase = phase.reshape(-1, br, bc).repeat_interleave(rows // br, 1).repeat_interleave(cols // bc, 2)
        phase = phase.reshape(-1, rows, cols)
        u = (phase / TWO_PI).clamp(1e-9, 1)
        phase = v["scale"].float() * TWO_PI * u ** v["gamma"].float()
        if self.had_crosstalk or "crosstalk_sigma_px" in self.fit:
            phase = _blur(phase, v["crosstalk_sigma_px"].float())
        beam = gaussian_beam(self.slm_shape, self.cfg.slm_pitch_m, v["waist_m"], v["beam_offset_m"]) * math.sqrt(
            self.cfg.power)
        # the kernel's phase k r (~1e5 rad) needs float64; the propagation itself runs in complex64
        kernel = dim_kernel(self.slm_shape, self.out_shape, self.cfg.slm_pitch_m, self.cfg.wavelength_m,
                            v["distance_m"], v["camera_offset_m"]).to(torch.complex64)
        beam = beam.to(torch.complex64)
        fft_size = tuple(1 << (int(s)).bit_length() for s in kernel.shape)
        out_size = (kernel.shape[0] - rows + 1, kernel.shape[1] - cols + 1)
        kernel_fft = torch.fft.fft2(kernel, s=fft_size)
        intensity = dim_camera_field(beam, kernel_fft, fft_size, out_size, phase).abs().square()
        b = self.cfg.binning
        if b > 1:
            intensity = torch.nn.functional.avg_pool2d(intensity.unsqueeze(1), b).squeeze(1) * (b * b)
        return intensity

    def readout(self, y: torch.Tensor) -> torch.Tensor:
        """Camera pixels -> the rig's outputs (the detector regions' sums, when it has them)."""
        if self.grid is None:
            return y
        g0, g1 = self.grid
        h, w = y.shape[-2] // g0, y.shape[-1] // g1
        return y.reshape(-1, g0, h, g1, w).sum(dim=(2, 4)).reshape(y.shape[0], -1)

    def forward(self, x: torch.Tensor, theta: torch.Tensor | None = None) -> torch.Tensor:
        v = self.values(theta)
        y = self.readout(self.power(x, theta).to(torch.float64) * v["gain"]) + v["offset"]
        if self.dark is not None:
            y = y - (self.dark.reshape(y.shape[1:]) if self.dark.numel() > 1 else self.dark)
        return y

    # -- the fitted twin as a config ----------------------------------------------------------------------
    def fitted_section(self, noise: Mapping[str, float] | None = None,
                       rig: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """The model section with the fitted values: a twin config a run can use (``estimator.model``).

        From ``rig`` (the rig's section) it takes what a rig's config states rather than what a fit finds: the
        SLM's drive bits (``slm_quantisation``) and the camera's bit depth (its clip at full scale)."""
        v = {k: t.detach().tolist() for k, t in self.values().items()}
        out = copy.deepcopy(self.section)
        out["distance_m"] = float(v["distance_m"][0])
        out["waist_m"] = float(v["waist_m"][0])
        out["beam_offset_m"] = [float(a) for a in v["beam_offset_m"]]
        out["camera_offset_m"] = [float(a) for a in v["camera_offset_m"]]
        wrappers = [w for w in out.get("wrappers") or [] if w.get("type") not in
                    ("slm_phase_response", "slm_crosstalk", "camera")]
        inputs = [w for w in wrappers if w.get("type") == "slm_macropixels"]
        readout = [w for w in wrappers if w.get("type") == "detector_regions"]
        corrections = [w for w in wrappers if w.get("type") in CORRECTIONS]
        rest = [w for w in wrappers if w not in inputs and w not in readout and w not in corrections]
        front: list[dict[str, Any]] = []
        sigma = float(v["crosstalk_sigma_px"][0])
        if (self.had_crosstalk or "crosstalk_sigma_px" in self.fit) and sigma > 0.05:
            front.append({"type": "slm_crosstalk", "sigma_px": round(min(sigma, 10.0), 4)})
        front.append({"type": "slm_phase_response", "gamma": round(min(max(float(v["gamma"][0]), 0.2), 5.0), 5),
                      "scale": round(min(max(float(v["scale"][0]), 1e-3), 1.0), 5)})
        stated = [w for w in (rig or {}).get("wrappers") or [] if isinstance(w, Mapping)]
        if not any(w.get("type") == "slm_quantisation" for w in rest):
            front += [copy.deepcopy(dict(w)) for w in stated if w.get("type") == "slm_quantisation"]
        rig_cameras = [w for w in stated if w.get("type") == "camera"]
        bit_depth = int(rig_cameras[-1].get("bit_depth", 12)) if rig_cameras else 16
        gain, offset = float(v["gain"][0]), float(v["offset"][0])
        camera: list[dict[str, Any]] = []
        if self.has_camera or abs(gain - 1) > 1e-3 or abs(offset) > 1e-6:
            e_per_count = float((noise or {}).get("gain_e_per_count", 1.0))
            read = float((noise or {}).get("read_noise_counts", 0.0)) * e_per_count
            photons_qe = 1.5e8 * 0.6
            camera.append({"type": "camera", "exposure_s": gain * e_per_count / photons_qe, "photons_per_s": 1.5e8,
                           "quantum_efficiency": 0.6, "gain_e_per_count": e_per_count, "read_noise_e": read,
                           "dark_level_counts": max(0.0, offset) if self.grid is None else 0.0, "bit_depth": bit_depth,
                           "shot_noise": noise is not None})
        out["wrappers"] = front + rest + camera + readout + inputs + corrections
        return out


def _blur(phase: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """Gaussian blur of ``batch x rows x cols`` by ``sigma`` pixels (replicated edges), differentiable in sigma."""
    radius = 3
    t = torch.arange(-radius, radius + 1, dtype=phase.dtype)
    k = torch.exp(-0.5 * (t / sigma.clamp_min(0.05)) ** 2)
    k = k / k.sum()
    img = torch.nn.functional.pad(phase.unsqueeze(1), (radius,) * 4, mode="replicate")
    img = torch.nn.functional.conv2d(img, k.reshape(1, 1, 1, -1))
    img = torch.nn.functional.conv2d(img, k.reshape(1, 1, -1, 1))
    return img.squeeze(1)


@TWIN_MODELS.register("owms_twin")
def owms_model(section: Mapping[str, Any], fit: tuple[str, ...] | None = None) -> OWMSParametric:
    return OWMSParametric(section, fit)
