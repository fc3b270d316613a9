"""Each bench imperfection changes the output the way its physics says; bad configs fail on load."""

from __future__ import annotations

import math
import time

import pytest
import torch
from conftest import CountingBox

from hil.errors import ConfigError
from hil.run import load_run_config
from hil.sections import parse_blackbox

pytest.importorskip("torchoptics", reason="the OWMS twin needs TorchOptics: pip install 'hil[optics]'")

TWO_PI = 2 * math.pi


class PhaseEcho(CountingBox):
    """A 3600-phase box that answers its input (so input-side effects are visible) on a 60 x 60 'SLM'."""

    slm_shape = (60, 60)

    def __init__(self) -> None:
        super().__init__(3600)
        from dataclasses import replace

        self.spec = replace(self.spec, lower=torch.zeros(3600), upper=torch.full((3600,), TWO_PI),
                            output_shape=(3600,))

    def _query(self, x):
        self.received.append(x.clone())
        return x.clone()

    def forward_differentiable(self, x):
        return x


def wrap(inner, *wrappers):
    box = inner
    for w in wrappers:
        section = parse_blackbox({"type": "owms_twin", "wrappers": [w]})
        box = section.wrappers[0].build(inner=box)
    return box


def test_quantisation_yields_2_to_the_bits_levels_and_wraps():
    echo = PhaseEcho()
    box = wrap(echo, {"type": "slm_quantisation", "bits": 3})
    x = torch.linspace(0, TWO_PI, 3600)[None]
    with box:
        y = box.query(x)
    levels = torch.unique(y)
    assert len(levels) == 8
    assert torch.allclose(levels, torch.arange(8) * TWO_PI / 8, atol=1e-5)
    assert float(y[0, -1]) == 0.0  # 2 pi is phase 0 on an SLM
    below_top = x < TWO_PI - TWO_PI / 16
    assert float((y - x)[below_top].abs().max()) <= TWO_PI / 16 + 1e-5  # rounding: at most half a step
    # straight-through gradient on the differentiable path
    xr = x.clone().requires_grad_(True)
    box.forward_differentiable(xr).sum().backward()
    assert torch.equal(xr.grad, torch.ones_like(xr))


def test_phase_response_gamma_bends_the_middle_not_the_ends():
    box = wrap(PhaseEcho(), {"type": "slm_phase_response", "gamma": 2.0, "scale": 0.9})
    x = torch.tensor([[0.0, math.pi, TWO_PI]]).expand(1, 3).repeat(1, 1200)
    with box:
        y = box.query(x)[0, :3]
    assert torch.allclose(y, torch.tensor([0.0, 0.9 * TWO_PI * 0.25, 0.9 * TWO_PI]), atol=1e-5)


def test_crosstalk_blurs_a_single_pixel_and_conserves_the_mean_drive():
    box = wrap(PhaseEcho(), {"type": "slm_crosstalk", "sigma_px": 1.0})
    x = torch.zeros(1, 3600)
    x[0, 30 * 60 + 30] = 3.0
    with box:
        y = box.query(x).reshape(60, 60)
    assert float(y[30, 30]) < 3.0 * 0.5 and float(y[30, 31]) > 0 and float(y[31, 31]) > 0
    assert float(y.sum()) == pytest.approx(3.0, rel=1e-5)
    assert float(y[30, 31]) == pytest.approx(float(y[31, 30]), rel=1e-5)  # isotropic


def test_crosstalk_needs_an_slm():
    with pytest.raises(ConfigError, match="slm_shape"):
        wrap(CountingBox(3), {"type": "slm_crosstalk"})


def test_camera_saturates_at_the_bit_depth_and_rounds_to_counts():
    twin_section = {"type": "owms_twin", "wrappers": [{"type": "camera", "bit_depth": 8, "exposure_s": 1.0}]}
    box = parse_blackbox(twin_section).build()
    with box:
        y = box.query(torch.zeros(2, 3600))
    assert float(y.max()) == 255.0
    assert torch.equal(y, torch.round(y))
    assert float(y.min()) >= 0


def test_camera_noise_statistics_match_shot_and_read_noise():
    """Shot noise variance = mean electrons; read noise adds read_noise_e^2; gain divides both."""
    class Flat(CountingBox):
        def __init__(self):
            super().__init__(1)
            from dataclasses import replace

            self.spec = replace(self.spec, output_shape=(20000,))

        def _query(self, x):
            return torch.full((x.shape[0], 20000), 1e-3)

    cam = {"type": "camera", "photons_per_s": 1e9, "exposure_s": 1e-3, "quantum_efficiency": 0.5,
           "gain_e_per_count": 2.0, "read_noise_e": 10.0, "dark_level_counts": 100.0, "bit_depth": 16}
    box = wrap(Flat(), cam)
    with box:
        y = box.query(torch.zeros(1, 1))[0]
    electrons = 1e-3 * 1e9 * 1e-3 * 0.5  # 500
    assert float(y.mean()) == pytest.approx(electrons / 2 + 100, rel=0.01)
    assert float(y.var()) == pytest.approx((electrons + 100) / 4 + 1 / 12, rel=0.06)
    quiet = wrap(Flat(), {**cam, "shot_noise": False, "read_noise_e": 0.0})
    with quiet:
        assert float(quiet.query(torch.zeros(1, 1)).var()) == 0.0


def test_camera_noise_is_reproducible_from_the_seed():
    def frames(seed):
        box = parse_blackbox({"type": "owms_twin", "wrappers": [{"type": "camera", "seed": seed}]}).build()
        with box:
            return box.query(torch.zeros(2, 3600))

    assert torch.equal(frames(3), frames(3))
    assert not torch.equal(frames(3), frames(4))


def test_drift_is_slow_bounded_and_reproducible_from_the_seed():
    def run(seed):
        box = wrap(CountingBox(1), {"type": "drift", "power_amplitude": 0.1, "offset_amplitude": 0.5,
                                    "period_queries": 200, "seed": seed})
        x = torch.full((1, 1), 0.5)
        with box:
            return torch.cat([box.query(x) for _ in range(400)])[:, 0]  # y = 0.5 without drift

    a, b, c = run(0), run(0), run(1)
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert float(a.min()) >= 0.5 * 0.9 - 0.5 - 1e-6 and float(a.max()) <= 0.5 * 1.1 + 0.5 + 1e-6
    assert float(a.max() - a.min()) > 0.1  # it does drift
    assert float((a[1:] - a[:-1]).abs().max()) < 0.05  # slowly: neighbouring queries barely differ


def test_latency_delays_each_frame():
    box = wrap(CountingBox(1), {"type": "latency", "settle_s": 0.01, "exposure_s": 0.005, "per_batch_s": 0.02})
    with box:
        t0 = time.perf_counter()
        box.query(torch.zeros(4, 1))
        elapsed = time.perf_counter() - t0
    assert 0.08 <= elapsed < 0.5


def test_wrappers_keep_inputs_inside_the_inner_bounds():
    echo = PhaseEcho()
    box = wrap(echo, {"type": "slm_crosstalk", "sigma_px": 2.0}, {"type": "slm_phase_response", "gamma": 0.7},
               {"type": "slm_quantisation", "bits": 8})
    with box:
        box.query(torch.rand(16, 3600) * TWO_PI)
    sent = echo.received[-1]
    assert float(sent.min()) >= 0 and float(sent.max()) < TWO_PI


def test_a_mismatched_noisy_bench_twin_differs_from_the_model_twin():
    model = parse_blackbox({"type": "owms_twin"}).build()
    bench = parse_blackbox({"type": "owms_twin", "distance_m": 0.022, "waist_m": 75e-6,
                            "beam_offset_m": [2e-5, 0.0]}).build()
    x = torch.rand(4, 3600, generator=torch.Generator().manual_seed(0)) * TWO_PI
    with model, bench:
        a, b = model.query(x), bench.query(x)
    assert float((a - b).abs().sum() / a.abs().sum()) > 0.2


@pytest.mark.parametrize(
    ("wrapper", "message"),
    [
        ({"type": "camera", "bit_depth": 40}, r"camera.bit_depth must be in 1..16"),
        ({"type": "camera", "exposure": 1e-3}, r"blackbox.wrappers\[0\]: unknown key 'exposure'"),
        ({"type": "slm_quantisation", "bits": "eight"}, r"blackbox.wrappers\[0\].bits: expected an integer"),
        ({"type": "drift", "power_amplitude": 2.0}, r"drift.power_amplitude must be in \[0, 1\)"),
        ({"type": "detector_regions", "grid": [4]}, r"detector_regions.grid must be \[rows, cols\]"),
        ({"type": "slm_macropixels", "blocks": [0, 3]}, r"slm_macropixels.blocks must be \[rows, cols\]"),
        ({"type": "blur"}, r"blackbox.wrappers\[0\].type: unknown blackbox wrapper type 'blur'; allowed: .*camera"),
    ],
)
def test_misconfigured_imperfection_fails_on_load_naming_the_key(wrapper, message):
    with pytest.raises(ConfigError, match=message):
        load_run_config({"blackbox": {"type": "owms_twin", "wrappers": [wrapper]},
                         "objective": {"type": "two_spots"}, "estimator": {"type": "exact"}})
