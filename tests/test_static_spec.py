"""The shapes a config fixes, known before anything is built (:mod:`hil.shapes`): for the twins of hil.sim_backends
and the bench imperfections around them, ``parse_blackbox(section).static_spec()`` is the built BlackBox's
``static_spec_of``; a wrapper or an objective that does not fit fails there, naming the key, as building fails; and
the modules declaring these types import without torch (``hil validate`` stays fast)."""

from __future__ import annotations

import subprocess
import sys
from importlib.util import find_spec

import pytest

from hil.config import parse_typed
from hil.errors import ConfigError
from hil.registry import OBJECTIVES
from hil.sections import check_objective_shape, parse_blackbox
from hil.shapes import StaticSpec, static_spec_of

NEEDS_OPTICS = pytest.mark.skipif(find_spec("torchoptics") is None, reason="pip install 'hil[optics]'")

OWMS = {"type": "owms_twin", "slm_shape": [16, 16], "camera_shape": [8, 8]}
CNON = {"type": "cnon_twin", "dim": 4, "steps": 5}
OPAMP = {"type": "opamp_ngspice", "n_workers": 1}  # building it starts no simulator (that is connect's)
FOURIER = {"type": "fourier_twin", "slm_shape": [16, 16]}
FOURIER_BLOCKS = {"type": "fourier_twin", "slm_shape": [16, 16], "blocks": [4, 8], "camera_shape": [12, 14],
                  "roi": [1, 2, 8, 6]}
FOURIER_REGIONS = {"type": "fourier_twin", "slm_shape": [16, 12], "camera_shape": [12, 12], "regions": [2, 3]}

#: the wrappers that keep their inner BlackBox's shapes, whatever it is
ANYWHERE = [{"type": "slm_quantisation"}, {"type": "slm_phase_response", "gamma": 1.2}, {"type": "drift"},
            {"type": "camera"}, {"type": "latency", "settle_s": 0.0}, {"type": "slm_settling"}]
CROSSTALK = {"type": "slm_crosstalk"}
#: the wrappers each box fits besides ANYWHERE's: an SLM's (crosstalk; macro-pixels when it takes one input per SLM
#: pixel), a 2-D image's (detector regions dividing it)
FITS: list[tuple[str, dict, list[dict]]] = [
    ("owms", OWMS, [CROSSTALK, {"type": "slm_macropixels", "blocks": [4, 8]}, {"type": "detector_regions"},
                    {"type": "detector_regions", "grid": [2, 8]}]),
    ("cnon", CNON, []),
    ("opamp", OPAMP, []),
    ("fourier", FOURIER, [CROSSTALK, {"type": "slm_macropixels", "blocks": [8, 2]},
                          {"type": "detector_regions", "grid": [4, 2]}]),
    ("fourier_blocks", FOURIER_BLOCKS, [CROSSTALK, {"type": "detector_regions", "grid": [2, 3]}]),
    ("fourier_regions", FOURIER_REGIONS, [CROSSTALK, {"type": "slm_macropixels", "blocks": [4, 6]}]),
]


def _cases() -> list:
    cases = []
    for name, box, wrappers in FITS:
        marks = [NEEDS_OPTICS] if box["type"] == "owms_twin" else []
        cases.append(pytest.param(box, id=name, marks=marks))
        for w in ANYWHERE + wrappers:
            wid = "-".join([name, w["type"], *(str(v) for k, v in w.items() if k != "type")])
            cases.append(pytest.param({**box, "wrappers": [w]}, id=wid, marks=marks))
    # whole benches: SLM side, light side, readout, in the order a bench config writes them
    chain = [{"type": "slm_crosstalk", "sigma_px": 0.5}, {"type": "slm_phase_response", "gamma": 1.1, "scale": 0.97},
             {"type": "slm_quantisation", "bits": 8}, {"type": "drift"}, {"type": "camera", "bit_depth": 12},
             {"type": "detector_regions", "grid": [2, 2]}, {"type": "slm_macropixels", "blocks": [4, 4]},
             {"type": "latency", "settle_s": 0.0}]
    cases.append(pytest.param({**OWMS, "wrappers": chain}, id="owms-bench", marks=[NEEDS_OPTICS]))
    cases.append(pytest.param({**FOURIER, "wrappers": chain}, id="fourier-bench"))
    return cases


@pytest.mark.parametrize("section", _cases())
def test_the_config_says_the_shapes_the_built_box_has(section):
    parsed = parse_blackbox(section)
    spec = parsed.static_spec()
    assert isinstance(spec, StaticSpec)
    box = parse_blackbox(section).build()
    try:
        assert spec == static_spec_of(box)
    finally:
        box.close()


def test_the_shapes_are_those_of_the_twins():
    assert parse_blackbox(OWMS).static_spec() == StaticSpec(256, (8, 8), (16, 16))
    assert parse_blackbox(CNON).static_spec() == StaticSpec(4, (4,), None)
    assert parse_blackbox(OPAMP).static_spec() == StaticSpec(10, (3,), None)
    assert parse_blackbox(FOURIER_BLOCKS).static_spec() == StaticSpec(32, (8, 6), (16, 16))
    assert parse_blackbox(FOURIER_REGIONS).static_spec() == StaticSpec(192, (6,), (16, 12))
    macro = {**OWMS, "wrappers": [{"type": "detector_regions", "grid": [2, 4]},
                                  {"type": "slm_macropixels", "blocks": [8, 4]}]}
    assert parse_blackbox(macro).static_spec() == StaticSpec(32, (8,), (16, 16))


# -- what does not fit fails before anything is built, naming the key as the user wrote it -----------------------

LIGHT = [{"type": "camera"}, {"type": "drift"}]


@pytest.mark.parametrize(("section", "message"), [
    ({**OWMS, "wrappers": [*LIGHT, {"type": "slm_macropixels", "blocks": [5, 4]}]},
     r"blackbox\.wrappers\[2\]\.blocks: \[5, 4\] must divide the SLM's \[16, 16\] pixels evenly"),
    ({**FOURIER, "wrappers": [{"type": "slm_macropixels", "blocks": [16, 3]}]},
     r"blackbox\.wrappers\[0\]\.blocks: \[16, 3\] must divide the SLM's \[16, 16\] pixels evenly"),
    ({**FOURIER_BLOCKS, "wrappers": [{"type": "slm_macropixels", "blocks": [4, 4]}]},
     r"blackbox\.wrappers\[0\]\.blocks: must be the outermost input-side wrapper: the blackbox it wraps takes 32 "
     r"inputs, not one per pixel of its \[16, 16\] SLM"),
    ({**OWMS, "wrappers": [{"type": "slm_macropixels", "blocks": [4, 4]}, {"type": "slm_macropixels",
                                                                             "blocks": [2, 2]}]},
     r"blackbox\.wrappers\[1\]\.blocks: must be the outermost input-side wrapper"),
    ({**CNON, "wrappers": [{"type": "slm_macropixels"}]},
     r"blackbox\.wrappers\[0\]: the blackbox it wraps has no slm_shape; wrap an SLM twin"),
    ({**CNON, "wrappers": [{"type": "slm_crosstalk"}]},
     r"blackbox\.wrappers\[0\]: the blackbox it wraps has no slm_shape; wrap an SLM twin"),
    ({**OWMS, "wrappers": [*LIGHT, {"type": "detector_regions", "grid": [3, 4]}]},
     r"blackbox\.wrappers\[2\]\.grid: \[3, 4\] must divide the camera image \[8, 8\] evenly"),
    ({**FOURIER_REGIONS, "wrappers": [{"type": "detector_regions"}]},
     r"blackbox\.wrappers\[0\]\.grid: needs a 2-D camera image; the blackbox it wraps outputs \[6\]"),
    ({**OPAMP, "wrappers": [{"type": "camera"}, {"type": "detector_regions", "grid": [1, 1]}]},
     r"blackbox\.wrappers\[1\]\.grid: needs a 2-D camera image; the blackbox it wraps outputs \[3\]"),
])
def test_a_wrapper_that_does_not_fit_fails_in_static_spec_naming_its_key(section, message):
    parsed = parse_blackbox(section)  # each wrapper's own options are fine: only what it wraps is wrong
    with pytest.raises(ConfigError, match="^" + message):
        parsed.static_spec()


@pytest.mark.parametrize(("wrapper", "message"), [
    ({"type": "slm_macropixels", "blocks": [5, 4]},
     r"^slm_macropixels\.blocks: \[5, 4\] must divide the SLM's \[16, 16\] pixels evenly"),
    ({"type": "detector_regions", "grid": [3, 4]}, r"^detector_regions\.grid: \[3, 4\] must divide the camera image"),
])
def test_building_fails_with_the_same_check_naming_the_wrapper(wrapper, message):
    """The constructors call the Config's static_spec: one check, the same words on a built box."""
    section = parse_blackbox({**FOURIER, "camera_shape": [8, 8], "wrappers": [wrapper]})
    with pytest.raises(ConfigError, match=message):
        section.build()


def test_building_an_slm_wrapper_around_a_box_without_an_slm_fails_naming_the_wrapper():
    with pytest.raises(ConfigError, match=r"^slm_crosstalk: the blackbox it wraps has no slm_shape"):
        parse_blackbox({**CNON, "wrappers": [{"type": "slm_crosstalk"}]}).build()


def _objective(section: dict):
    return parse_typed(OBJECTIVES, section, "objective")


@pytest.mark.parametrize(("objective", "shape", "message"), [
    ({"type": "two_spots"}, (64,), r"^objective: two_spots needs a 2-D camera image; the blackbox outputs \(64,\)"),
    ({"type": "two_spots"}, (4, 4, 3), r"^objective: two_spots needs a 2-D camera image"),
    ({"type": "two_spots", "offset_px": [1e4, 0.0]}, (32, 32),
     r"^objective: two_spots: both spots \(separation_px 12, offset_px \[10000.0, 0.0\], waist_px 3\) fall outside "
     r"the 32 x 32 camera image; the target would be empty"),
    ({"type": "opamp_fom"}, (8, 8),
     r"^objective: opamp_fom needs \[gain_db, ugbw_hz, phase_margin_deg\] outputs, the blackbox gives shape \[8, 8\]"),
])
def test_an_objective_that_does_not_fit_the_output_fails_in_check_objective_shape(objective, shape, message):
    with pytest.raises(ConfigError, match=message):
        check_objective_shape(_objective(objective), shape)
    with pytest.raises(ConfigError, match="^objective " + message[len("^objective: "):]):
        _objective(objective).build(output_shape=shape)  # from_config: the same check, the same words


def test_objectives_that_fit_pass_and_opamp_fom_is_maximised():
    assert check_objective_shape(_objective({"type": "two_spots"}), (8, 8))
    assert check_objective_shape(_objective({"type": "two_spots", "offset_px": [3.0, -2.0]}), (32, 24))
    assert check_objective_shape(_objective({"type": "opamp_fom"}), (3,))
    assert OBJECTIVES.attribute("opamp_fom", "sense") == "max"
    assert OBJECTIVES.attribute("two_spots", "sense") == "min"


def test_the_two_spot_target_is_one_numpy_computation():
    import numpy as np
    import torch
    from hil.sim_backends.owms import two_spot_target
    from hil.sim_backends.owms_config import two_spot_target as numpy_target

    target = two_spot_target((32, 24), 12.0, 3.0, [1.5, -2.0])
    assert target.dtype == torch.float32 and target.shape == (32, 24) and float(target.max()) == 1.0
    assert np.array_equal(target.numpy(), numpy_target((32, 24), 12.0, 3.0, [1.5, -2.0]))
    # the peaks sit at (+-separation / 2, 0) pixels from the camera's centre plus the offset
    image = numpy_target((33, 41), 12.0, 2.0)
    assert image[16, 14] == pytest.approx(1.0) and image[16, 26] == pytest.approx(1.0)
    assert not np.isfinite(numpy_target((32, 32), 12.0, 3.0, [1e4, 0.0])).any()


MODULES = ["owms_config", "cnon_config", "opamp_config", "fourier_config", "imperfections_config"]


def test_the_declarations_import_without_torch():
    code = ("import sys\n" + "".join(f"import hil.sim_backends.{m}\n" for m in MODULES)
            + "assert 'torch' not in sys.modules, sorted(m for m in sys.modules if 'torch' in m)\n")
    subprocess.run([sys.executable, "-c", code], check=True)


@pytest.mark.parametrize(("registry", "names", "module"), [
    ("BLACKBOXES", ["owms_twin"], "owms"), ("OBJECTIVES", ["two_spots"], "owms"),
    ("BLACKBOXES", ["cnon_twin"], "cnon"), ("BLACKBOXES", ["opamp_ngspice"], "opamp"),
    ("OBJECTIVES", ["opamp_fom"], "opamp"), ("BLACKBOXES", ["fourier_twin"], "fourier"),
    ("WRAPPERS", ["camera", "detector_regions", "drift", "latency", "slm_crosstalk", "slm_macropixels",
                  "slm_phase_response", "slm_quantisation", "slm_settling"], "imperfections"),
])
def test_each_type_is_declared_in_its_config_module(registry, names, module):
    """Importing the declarations alone gives each type's Config, and the implementation uses that one."""
    from importlib import import_module

    from hil import registry as R

    reg = getattr(R, registry)
    import_module(f"hil.sim_backends.{module}_config")
    for name in names:
        config = reg.config(name)
        assert config.__module__ == f"hil.sim_backends.{module}_config", name
        assert reg.get(name).Config is config
        assert reg.get(name).__module__ == f"hil.sim_backends.{module}", name
