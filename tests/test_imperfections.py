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
        ({"type": "camera", "bit_depth": 40}, r"blackbox.wrappers\[0\].bit_depth: must be >= 1 and <= 16, got 40"),
        ({"type": "camera", "exposure": 1e-3}, r"blackbox.wrappers\[0\].exposure: unknown key; allowed keys: .*"),
        ({"type": "slm_quantisation", "bits": "eight"}, r"blackbox.wrappers\[0\].bits: expected an integer"),
        ({"type": "drift", "power_amplitude": 2.0},
         r"blackbox.wrappers\[0\].power_amplitude: must be >= 0 and < 1, got 2.0"),
        ({"type": "detector_regions", "grid": [4]}, r"blackbox.wrappers\[0\].grid: must be \[rows, cols\]"),
        ({"type": "slm_macropixels", "blocks": [0, 3]}, r"blackbox.wrappers\[0\].blocks\[0\]: must be >= 1, got 0"),
        ({"type": "blur"}, r"blackbox.wrappers\[0\].type: unknown blackbox wrapper type 'blur'; allowed: .*camera"),
    ],
)
def test_misconfigured_imperfection_fails_on_load_naming_the_key(wrapper, message):
    with pytest.raises(ConfigError, match=message):
        load_run_config({"blackbox": {"type": "owms_twin", "wrappers": [wrapper]},
                         "objective": {"type": "two_spots"}, "estimator": {"type": "exact"}})


# -- every number of every wrapper is declared: non-finite and out-of-range values fail on parse, naming the key --

INF, NAN = float("inf"), float("nan")


@pytest.mark.parametrize(
    ("wrapper", "message"),
    [
        ({"type": "camera", "exposure_s": INF}, r"wrappers\[0\].exposure_s: expected a finite number, got inf"),
        ({"type": "camera", "exposure_s": NAN}, r"wrappers\[0\].exposure_s: expected a finite number, got nan"),
        ({"type": "camera", "exposure_s": 0.0}, r"wrappers\[0\].exposure_s: must be > 0, got 0.0"),
        ({"type": "camera", "read_noise_e": NAN}, r"wrappers\[0\].read_noise_e: expected a finite number"),
        ({"type": "camera", "read_noise_e": INF}, r"wrappers\[0\].read_noise_e: expected a finite number"),
        ({"type": "camera", "read_noise_e": -1.0}, r"wrappers\[0\].read_noise_e: must be >= 0, got -1.0"),
        ({"type": "camera", "photons_per_s": INF}, r"wrappers\[0\].photons_per_s: expected a finite number"),
        ({"type": "camera", "quantum_efficiency": 1.5}, r"wrappers\[0\].quantum_efficiency: must be > 0 and <= 1"),
        ({"type": "camera", "dark_level_counts": NAN}, r"wrappers\[0\].dark_level_counts: expected a finite"),
        ({"type": "camera", "gain_e_per_count": 0.0}, r"wrappers\[0\].gain_e_per_count: must be >= 1e-06"),
        ({"type": "camera", "seed": -1}, r"wrappers\[0\].seed: must be >= 0"),
        ({"type": "camera", "seed": 2**64}, r"wrappers\[0\].seed: must be >= 0 and <= "),
        ({"type": "slm_quantisation", "bits": 0}, r"wrappers\[0\].bits: must be >= 1 and <= 16, got 0"),
        ({"type": "slm_phase_response", "gamma": INF}, r"wrappers\[0\].gamma: expected a finite number"),
        ({"type": "slm_phase_response", "scale": 0.0}, r"wrappers\[0\].scale: must be > 0 and <= 1, got 0.0"),
        ({"type": "slm_crosstalk", "sigma_px": NAN}, r"wrappers\[0\].sigma_px: expected a finite number"),
        ({"type": "slm_crosstalk", "sigma_px": 11.0}, r"wrappers\[0\].sigma_px: must be >= 0.01 and <= 10"),
        ({"type": "slm_crosstalk", "sigma_px": 1e-300}, r"wrappers\[0\].sigma_px: must be >= 0.01"),  # NaN kernel
        ({"type": "drift", "period_queries": INF}, r"wrappers\[0\].period_queries: expected a finite number"),
        ({"type": "drift", "period_queries": 1e-300}, r"wrappers\[0\].period_queries: must be >= 1"),
        ({"type": "drift", "offset_amplitude": NAN}, r"wrappers\[0\].offset_amplitude: expected a finite"),
        ({"type": "latency", "settle_s": INF}, r"wrappers\[0\].settle_s: expected a finite number, got inf"),
        ({"type": "latency", "per_batch_s": -0.1}, r"wrappers\[0\].per_batch_s: must be >= 0 and <= 3600"),
        ({"type": "latency", "exposure_s": 1e12}, r"wrappers\[0\].exposure_s: must be >= 0 and <= 3600"),
        ({"type": "slm_settling", "tau_s": NAN}, r"wrappers\[0\].tau_s: expected a finite number"),
        ({"type": "slm_settling", "frame_s": 101.0}, r"wrappers\[0\].frame_s: must be >= 0 and <= 100"),
        ({"type": "slm_macropixels", "blocks": [10, 10, 10]}, r"wrappers\[0\].blocks: must be \[rows, cols\]"),
        ({"type": "detector_regions", "grid": [4, -2]}, r"wrappers\[0\].grid\[1\]: must be >= 1, got -2"),
    ],
)
def test_wrapper_numbers_are_declared_and_checked_on_parse(wrapper, message):
    with pytest.raises(ConfigError, match=r"^blackbox\." + message):
        parse_blackbox({"type": "owms_twin", "wrappers": [wrapper]})


def test_every_wrapper_config_declares_the_range_of_its_numbers():
    from hil.config import undeclared_numbers
    from hil.registry import WRAPPERS

    for name in ("slm_quantisation", "slm_phase_response", "slm_crosstalk", "drift", "camera", "latency",
                 "slm_settling", "slm_macropixels", "detector_regions"):
        assert undeclared_numbers(WRAPPERS.get(name).Config) == [], name


def test_camera_values_that_would_give_nan_counts_fail_on_parse():
    """A dark level at full scale reads every pixel saturated; an electrons-per-unit scale past float32's largest
    number turns a dark pixel's 0 x inf into NaN: both are config errors naming the key."""
    with pytest.raises(ConfigError, match=r"blackbox.wrappers\[0\].dark_level_counts: must be below the full "
                                          r"scale 2\^bit_depth - 1 = 255"):
        parse_blackbox({"type": "owms_twin", "wrappers": [{"type": "camera", "bit_depth": 8,
                                                           "dark_level_counts": 300.0}]})
    with pytest.raises(ConfigError, match=r"blackbox.wrappers\[0\].exposure_s: photons_per_s x exposure_s x "
                                          r"quantum_efficiency = .* must be <= 1e\+38"):
        parse_blackbox({"type": "owms_twin", "wrappers": [{"type": "camera", "photons_per_s": 1e300,
                                                           "exposure_s": 1e10}]})


def test_a_camera_far_past_saturation_reads_full_scale_not_garbage():
    """torch.poisson returns negative numbers for means past ~9.2e18 (int64); the camera caps the mean there, far
    past saturation, so a blinding signal reads full scale, not 0."""
    box = parse_blackbox({"type": "owms_twin", "wrappers": [{"type": "camera", "photons_per_s": 1e20,
                                                             "exposure_s": 1.0, "bit_depth": 12}]}).build()
    camera = box
    y = camera.transform_output(torch.tensor([[0.0, 0.5, 1.0]]), True)
    assert float(y[0, 0]) < 100 and float(y[0, 1]) == 4095 and float(y[0, 2]) == 4095
