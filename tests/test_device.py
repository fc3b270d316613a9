"""``device: auto | cpu | cuda``: what every machine can check, and the GPU runs (``-m gpu``, skipped without one)."""

from __future__ import annotations

import importlib.util

import pytest
import torch

from hil.device import resolve_device
from hil.errors import ConfigError
from hil.run import load_run_config
from hil.surrogate import Surrogate, SurrogateConfig

HAS_GPU = torch.cuda.is_available()


def test_auto_picks_a_gpu_only_when_torch_sees_one():
    assert resolve_device("auto").type == ("cuda" if HAS_GPU else "cpu")
    assert resolve_device("cpu") == torch.device("cpu")


@pytest.mark.parametrize("bad", ["gpu", "tpu:0", "cuda:x", 3, "meta"])
def test_a_bad_device_names_the_key(bad):
    with pytest.raises(ConfigError, match=r"estimator\.device must be one of auto, cpu, cuda or cuda:N"):
        resolve_device(bad, "estimator.device")


@pytest.mark.skipif(HAS_GPU, reason="checks the message on a machine without a GPU")
def test_cuda_without_a_gpu_fails_on_load_naming_the_key(tmp_path):
    base = {"name": "d", "objective": {"type": "target_distance", "target_seed": 1},
            "optimizer": {"type": "gradient", "n_starts": 2, "iterations": 2}, "log": {"dir": str(tmp_path)}}
    with pytest.raises(ConfigError, match=r"estimator\.device: is 'cuda' but torch sees no GPU.*auto or cpu"):
        load_run_config({**base, "blackbox": {"type": "cnon_twin", "dim": 3},
                         "estimator": {"type": "surrogate", "device": "cuda"}})
    with pytest.raises(ConfigError, match=r"blackbox\.device: is 'cuda:1' but torch sees no GPU"):
        load_run_config({**base, "blackbox": {"type": "cnon_twin", "dim": 3, "device": "cuda:1"},
                         "estimator": {"type": "exact"}})


def _cnon(device: str):
    from sim_backends.cnon import CNONTwin

    return CNONTwin(CNONTwin.Config(dim=6, steps=10, device=device))


@pytest.mark.gpu
def test_twins_on_the_gpu_answer_as_on_the_cpu_and_return_cpu_tensors():
    x = torch.rand(16, 6) * 2 - 1
    with _cnon("cpu") as cpu, _cnon("cuda") as gpu:
        a, b = cpu.query(x), gpu.query(x)
    assert b.device.type == "cpu"
    torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)
    if importlib.util.find_spec("torchoptics") is not None:
        from sim_backends.owms import OWMSTwin

        phases = torch.rand(4, 3600) * 6.28
        with OWMSTwin(OWMSTwin.Config(device="cpu")) as cpu, OWMSTwin(OWMSTwin.Config(device="cuda")) as gpu:
            a, b = cpu.query(phases), gpu.query(phases)
        assert b.device.type == "cpu"
        torch.testing.assert_close(a, b, rtol=1e-3, atol=1e-6)


@pytest.mark.gpu
def test_a_gpu_surrogate_trains_and_differentiates_for_cpu_callers():
    lo, hi = -torch.ones(4), torch.ones(4)
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(300, 4, generator=gen) * 2 - 1
    y = torch.stack([x.sum(1), (x**2).sum(1)], dim=1)
    for loss in ("gradpie", "mse"):
        sur = Surrogate(SurrogateConfig(loss=loss, hidden=[32], steps=50, device="cuda"), lo, hi, (2,))
        assert next(sur.model.parameters()).device.type == "cuda"
        sur.add(x, y)
        assert sur.x.device.type == "cuda" and (sur.knn is None or sur.knn.neighbours.device.type == "cuda")
        assert torch.isfinite(torch.tensor(sur.fit()))
        g = sur.vjp(x[:5], torch.ones(5, 2))
        assert g.device.type == "cpu" and g.shape == (5, 4) and torch.isfinite(g).all()
        assert sur.predict(x[:5]).device.type == "cpu"


@pytest.mark.gpu
def test_a_run_with_twin_and_surrogate_on_the_gpu(tmp_path):
    from hil.run import execute

    cfg = load_run_config({
        "name": "gpu", "blackbox": {"type": "cnon_twin", "dim": 6, "steps": 10, "device": "cuda"},
        "objective": {"type": "target_distance", "target_seed": 1},
        "estimator": {"type": "surrogate", "hidden": [32], "steps": 10, "device": "cuda"},
        "optimizer": {"type": "gradient", "n_starts": 2, "local_samples": 1, "iterations": 20},
        "log": {"dir": str(tmp_path), "report": False}})
    result = execute(cfg)
    assert result.trace.iterations == 20 and result.trace.queries[-1] == 20 * 2 * 2


def test_a_cpu_surrogate_is_unchanged_by_the_device_key():
    """``device: cpu`` and ``auto`` on a CPU-only machine train to the same weights (the key moves tensors only)."""
    if HAS_GPU:
        pytest.skip("auto is the GPU here")
    lo, hi = -torch.ones(3), torch.ones(3)
    x = torch.rand(50, 3, generator=torch.Generator().manual_seed(0)) * 2 - 1
    fits = []
    for device in ("cpu", "auto"):
        sur = Surrogate(SurrogateConfig(hidden=[8], epochs=2, device=device), lo, hi, (1,))
        sur.add(x, x.sum(1, keepdim=True))
        fits.append(sur.fit())
    assert fits[0] == fits[1]
