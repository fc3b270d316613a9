"""OWMS twin: optical wave manipulation with a phase-only SLM, on TorchOptics.

    Gaussian beam (waist 70 um, 700 nm) -> 60 x 60 phase-only SLM -> free space (distance_m)
    -> camera intensity, integrated over camera pixels

Input: ``batch x (slm_rows * slm_cols)`` SLM phases in ``[0, 2 pi]`` rad, row-major.
Output: ``batch x camera_rows x camera_cols`` intensity per camera pixel, as the
fraction of the beam's power landing on that pixel (so a perfect system that
puts all light on the camera sums to 1).

Propagation is the Rayleigh-Sommerfeld direct integration method of TorchOptics
(``torchoptics.propagation.direct_integration_method``): the impulse response is
computed by TorchOptics once for the geometry and its FFT is cached, so a batch
costs one FFT, one product and one inverse FFT. The result equals
``Field.propagate_to_plane(..., propagation_method="DIM")`` (checked in the
tests). DIM is exact without aliasing when the distance is beyond the critical
distance ``2 * half_width * pitch / wavelength`` (about 11 mm at the defaults);
shorter distances are rejected with that number in the message.

The camera is a grid of ``camera_rows x camera_cols`` pixels of
``camera_pitch_m``, an integer multiple of the SLM pitch; the field is sampled
at the SLM pitch and each camera pixel integrates the ``binning x binning``
samples it covers. ``beam_offset_m`` (beam centre on the SLM) and
``camera_offset_m`` (camera centre relative to the optical axis) model
misalignment; a *bench twin* is this twin with different geometry from the
*model twin*.

All tensors are float32 / complex64 (TorchOptics defaults to float64; this
module sets its default dtype to float32 when a twin is built).
"""

from __future__ import annotations

import math

import torch
from hil.sim_backends import owms_config
from hil.sim_backends.owms_config import (  # noqa: F401  (re-exported)
    MAX_GRID_SIDE,
    OWMSTwinConfig,
    Side,
    TwoSpotsConfig,
    check_distance,
    critical_distance_m,
)

from hil.blackbox import BlackBox, BlackBoxSpec
from hil.config import FieldError
from hil.device import resolve_device
from hil.errors import ConfigError, DeviceError
from hil.objectives import Objective
from hil.registry import BLACKBOXES, OBJECTIVES

TWO_PI = 2 * math.pi


def _next_pow2(n: int) -> int:
    return 1 << (int(n) - 1).bit_length()


#: rows per FFT chunk: keeps the working set in cache (measured: 128 rows ~2x faster per row than 2048)
CHUNK_ROWS = 128


@BLACKBOXES.register("owms_twin")
class OWMSTwin(BlackBox):
    """``batch x 3600`` SLM phases (rad) -> ``batch x camera_rows x camera_cols`` power fraction per pixel."""

    Config = OWMSTwinConfig

    def __init__(self, config: Config | None = None) -> None:
        cfg = config or self.Config()
        self.config = cfg
        rows, cols = cfg.slm_shape
        self.slm_shape = (rows, cols)
        self.input_image_shape = self.slm_shape  # the input seen as an image (reports)
        self.camera_shape = tuple(cfg.camera_shape)
        super().__init__(
            BlackBoxSpec(
                name="owms_twin",
                input_dim=rows * cols,
                lower=torch.zeros(rows * cols),
                upper=torch.full((rows * cols,), TWO_PI),
                output_shape=self.camera_shape,
                stochastic=False,
                out_of_bounds=cfg.out_of_bounds,
            )
        )
        self.device = resolve_device(cfg.device, "device")
        beam, kernel_fft, self._fft_size, self._out_size = self._build_optics(cfg)
        self._beam, self._kernel_fft = beam.to(self.device), kernel_fft.to(self.device)

    @classmethod
    def from_config(cls, config: Config) -> OWMSTwin:
        return cls(config)

    def input_fields(self) -> torch.Tensor:
        """The incident beam on the SLM: ``rows x cols`` complex64, unit total power times ``power``."""
        return self._beam

    def _build_optics(self, cfg: Config) -> tuple[torch.Tensor, torch.Tensor, tuple[int, int], tuple[int, int]]:
        try:
            import torchoptics
        except ImportError as exc:
            raise DeviceError("the OWMS twin needs TorchOptics: pip install 'hil[optics]'") from exc
        from torchoptics import Field, PlanarGrid
        from torchoptics.profiles import gaussian
        from torchoptics.propagation.direct_integration_method import (
            calculate_impulse_response,
            calculate_meshgrid,
        )

        torchoptics.set_default_dtype(torch.float32)
        rows, cols = cfg.slm_shape
        pitch = cfg.slm_pitch_m
        beam = gaussian((rows, cols), waist_radius=cfg.waist_m, wavelength=cfg.wavelength_m, spacing=pitch,
                        offset=cfg.beam_offset_m).to(torch.complex64)
        beam = beam * math.sqrt(cfg.power) / beam.abs().square().sum().sqrt()  # unit power on the SLM grid
        b = cfg.binning
        out_rows, out_cols = cfg.camera_shape[0] * b, cfg.camera_shape[1] * b
        field = Field(beam, wavelength=cfg.wavelength_m, spacing=pitch)
        plane = PlanarGrid((out_rows, out_cols), z=cfg.distance_m, spacing=pitch, offset=cfg.camera_offset_m)
        x, y = calculate_meshgrid(field, plane)
        kernel = calculate_impulse_response(field, plane, x, y, "DIM").to(torch.complex64)
        # torchoptics.functional.conv2d_fft(kernel, field), with the kernel's FFT computed once and the FFT size
        # rounded up to a power of two (any size >= the kernel's gives the same valid part; 2^n is fastest)
        fft_size = (_next_pow2(kernel.shape[-2] + 1), _next_pow2(kernel.shape[-1] + 1))
        kernel_fft = torch.fft.fft2(kernel, s=fft_size)
        out_size = (kernel.shape[-2] - rows + 1, kernel.shape[-1] - cols + 1)
        return beam, kernel_fft, fft_size, out_size

    # -- the physics --------------------------------------------------------------------
    def camera_field(self, phase: torch.Tensor) -> torch.Tensor:
        """``batch x rows x cols`` SLM phases -> ``batch x (cam_rows*b) x (cam_cols*b)`` complex field at z."""
        return dim_camera_field(self._beam, self._kernel_fft, self._fft_size, self._out_size, phase)

    def forward_differentiable(self, x: torch.Tensor) -> torch.Tensor:
        """``batch x 3600`` phases -> ``batch x cam_rows x cam_cols`` power fraction on ``x``'s device (computed
        on the twin's device; differentiable)."""
        phase = x.to(self.device, torch.float32).reshape(x.shape[0], *self.slm_shape)
        intensity = self.camera_field(phase).abs().square()
        b = self.config.binning
        if b > 1:
            intensity = torch.nn.functional.avg_pool2d(intensity.unsqueeze(1), b).squeeze(1) * (b * b)
        return intensity.to(x.device)

    def _query(self, x: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return torch.cat([self.forward_differentiable(chunk) for chunk in x.split(CHUNK_ROWS)])


def dim_camera_field(beam: torch.Tensor, kernel_fft: torch.Tensor, fft_size: tuple[int, int],
                     out_size: tuple[int, int], phase: torch.Tensor) -> torch.Tensor:
    """The field at the camera: the beam (``rows x cols``) times ``exp(i phase)`` (``batch x rows x cols``),
    convolved with the impulse response whose ``fft_size`` FFT is ``kernel_fft``; ``batch x *out_size``."""
    # the kernel is the convolution weight and the field the input, as in torchoptics' dim_propagation
    slm = beam * torch.polar(torch.ones_like(phase), phase)
    # separable FFTs: the padded rows of the input and the discarded rows of the output are never transformed
    fr, fc = fft_size
    weight = torch.fft.fft(slm.flip(-1, -2).conj(), n=fc, dim=-1)
    weight_fft = torch.fft.fft(weight, n=fr, dim=-2).conj()
    out = torch.fft.ifft(kernel_fft * weight_fft, dim=-2)[..., : out_size[0], :]
    return torch.fft.ifft(out, dim=-1)[..., : out_size[1]]


@OBJECTIVES.register("two_spots")
class TwoSpots(Objective):
    """Distance of a camera image to two Gaussian spots (lower is better).

    ``d(I) = sqrt(mean((I / max I - T / max T)^2))`` over the camera pixels: the
    RMS difference of the peak-normalised images, so it ignores the absolute
    power (laser drift, exposure) and lies in [0, 1]. On the default geometry
    random SLM patterns give about 0.27, a flat SLM 0.19, and the exact gradient
    reaches below 0.01. The target ``T`` is two spots of intensity
    ``exp(-2 r^2 / waist^2)`` at ``(+-separation/2, 0)`` pixels from the camera centre.
    """

    Config = TwoSpotsConfig

    def __init__(self, target: torch.Tensor) -> None:
        self.target = target / target.max()

    @classmethod
    def from_config(cls, config: Config, *, output_shape: tuple[int, ...]) -> TwoSpots:
        try:
            config.check_output_shape(tuple(output_shape))
        except FieldError as exc:  # built without a config's path to name (a config is checked before it is built)
            raise ConfigError(f"objective {exc}") from None
        return cls(two_spot_target(output_shape, config.separation_px, config.waist_px, config.offset_px))

    def __call__(self, y: torch.Tensor) -> torch.Tensor:
        image = y.to(torch.float32).reshape(y.shape[0], -1)
        peak = image.amax(dim=1, keepdim=True).clamp_min(1e-12)
        return (image / peak - self.target.reshape(1, -1)).pow(2).mean(dim=1).sqrt()


def two_spot_target(shape: tuple[int, ...], separation_px: float, waist_px: float,
                    offset_px: list[float] | tuple[float, float] = (0.0, 0.0)) -> torch.Tensor:
    """``rows x cols`` image of two Gaussian spots (peak 1) centred on the camera plus ``offset_px``
    (:func:`.owms_config.two_spot_target`, as a float32 tensor)."""
    return torch.from_numpy(owms_config.two_spot_target(shape, separation_px, waist_px, offset_px))
