"""The options of the Fourier twin (``type: fourier_twin``), declared without importing the twin (or torch): a
config naming it is checked here; :mod:`.fourier` is imported when it is built."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Annotated, Literal

from hil.config import NonNegativeInt, PositiveFloat, Range, check
from hil.device import check_device
from hil.registry import BLACKBOXES
from hil.shapes import StaticSpec

#: one side of the SLM or the camera, in pixels (a 4K SLM: 4096)
Side = Annotated[int, Range(ge=1, le=8192)]
#: counts per unit intensity (exposure_s x gain) at most this: float32 counts stay finite
MAX_COUNTS_PER_INTENSITY = 1e30


@BLACKBOXES.declare("fourier_twin", "hil.sim_backends.fourier:FourierTwin")
@dataclass
class FourierTwinConfig:
    slm_shape: list[Side] | None = None  # [rows, cols]; default [64, 64]
    blocks: list[Side] | None = None
    camera_shape: list[Side] | None = None  # [rows, cols]; default the SLM's
    roi: list[NonNegativeInt] | None = None  # [y0, x0, height, width]; default the whole frame
    regions: list[Side] | None = None
    exposure_s: PositiveFloat = 1.0
    gain: PositiveFloat = 1.0
    gamma: Annotated[float, Range(ge=0.2, le=5)] = 1.0  # the SLM's phase response (1, 1: ideal)
    scale: Annotated[float, Range(gt=0, le=1.5)] = 1.0
    slm_bitdepth: Annotated[int, Range(ge=1, le=16)] = 8
    camera_bitdepth: Annotated[int, Range(ge=1, le=16)] = 8
    readout: bool = True  # clip and truncate to integer counts, as a camera does
    out_of_bounds: Literal["reject", "clip"] = "clip"
    device: str = "auto"

    def __post_init__(self) -> None:
        check_device(self.device)
        self.slm_shape = [64, 64] if self.slm_shape is None else list(self.slm_shape)
        for key in ("slm_shape", "blocks", "camera_shape", "regions"):
            value = getattr(self, key)
            check(value is None or len(value) == 2, key, f"must be [rows, cols] (2 positive integers), got {value}")
        check(self.roi is None or len(self.roi) == 4, "roi",
              f"must be [y0, x0, height, width] (4 integers), got {self.roi}")
        product = self.exposure_s * self.gain
        check(product <= MAX_COUNTS_PER_INTENSITY, "exposure_s",
              f"exposure_s x gain = {product:.3g} must be <= {MAX_COUNTS_PER_INTENSITY:g} (float32 counts)")
        # the optics' geometry (FourierRig checks it too): fail here, naming the key
        ny, nx = self.slm_shape
        hc, wc = self.slm_shape if self.camera_shape is None else self.camera_shape
        check(hc <= ny and wc <= nx, "camera_shape",
              f"{[hc, wc]} is larger than the far field {self.slm_shape} (slm_shape): slmsuite's unpad refuses "
              f"it (give an affine, which this model does not cover)")
        if self.blocks is not None:
            check(ny % self.blocks[0] == 0 and nx % self.blocks[1] == 0, "blocks",
                  f"{self.blocks} must divide slm_shape {self.slm_shape}")
        y0, x0, h, w = (0, 0, hc, wc) if self.roi is None else self.roi
        check(h >= 1 and w >= 1, "roi", f"height and width must be >= 1, got {self.roi}")
        check(y0 + h <= hc and x0 + w <= wc, "roi", f"{self.roi} does not fit the camera's {[hc, wc]} frame")
        if self.regions is not None:
            check(h % self.regions[0] == 0 and w % self.regions[1] == 0, "regions",
                  f"{self.regions} must divide the roi's {h} x {w}")

    def static_spec(self) -> StaticSpec:
        """One phase per macro-pixel (``blocks``, else per SLM pixel) -> the ROI's counts (``roi`` height x width,
        the whole camera frame by default) or one sum per region (``regions`` rows x cols)."""
        hc, wc = self.slm_shape if self.camera_shape is None else self.camera_shape
        h, w = (hc, wc) if self.roi is None else self.roi[2:]
        output = (h, w) if self.regions is None else (math.prod(self.regions),)
        rows, cols = self.slm_shape
        return StaticSpec(math.prod(self.blocks or self.slm_shape), output, (rows, cols))
