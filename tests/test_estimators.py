"""Gradient estimators, the physical layer, and GradPIE's advantage on clustered data."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from hil.config import parse, parse_typed
from hil.errors import ConfigError, EstimatorError
from hil.estimators import (
    ExactEstimator,
    FiniteDifferenceEstimator,
    SPSAEstimator,
    SurrogateEstimator,
)
from hil.layer import PhysicalLayer
from hil.lgso import LGSOConfig, LGSOEstimator
from hil.querylog import QueryLog, read_log
from hil.registry import BLACKBOXES, ESTIMATORS, OBJECTIVES
from hil.surrogate import Surrogate, SurrogateConfig

CNON = BLACKBOXES.get("cnon_twin")


def _twin(dim=5, **kw):
    return CNON(CNON.Config(dim=dim, horizon=2.0, steps=20, **kw)).connect()


def _exact_vjp(twin, x, g):
    return ExactEstimator().bind(twin).vjp(x, None, g)


def test_finite_differences_match_the_exact_gradient():
    twin = _twin()
    x = torch.rand(3, 5) * 1.6 - 0.8
    g = torch.randn(3, 5)
    fd = FiniteDifferenceEstimator(step=1e-3).bind(twin)
    got = fd.vjp(x, twin.query(x), g)
    assert torch.allclose(got, _exact_vjp(twin, x, g), rtol=2e-2, atol=2e-3)
    assert twin.stats.by_purpose["probe"] == 3 * 2 * 5


def test_spsa_is_unbiased_on_average():
    twin = _twin()
    x = (torch.rand(1, 5) * 1.6 - 0.8).expand(4000, 5).contiguous()
    g = torch.randn(1, 5).expand(4000, 5)
    est = SPSAEstimator(step=1e-3, n_directions=1).bind(twin).vjp(x, None, g).mean(dim=0)
    exact = _exact_vjp(twin, x[:1], g[:1])[0]
    cos = torch.nn.functional.cosine_similarity(est, exact, dim=0)
    assert cos > 0.95


class _HoleyTwin(type(_twin())):
    """The CNON twin, except that inputs with x[0] > 0.5 fail (non-finite answers, as a design the simulator
    cannot solve)."""

    def _query(self, x):
        y = super()._query(x)
        return torch.where((x[:, :1] > 0.5), torch.full_like(y, float("nan")), y)


def _holey(dim=5):
    return _HoleyTwin(CNON.Config(dim=dim, horizon=2.0, steps=20)).connect()


def test_probing_estimators_survive_a_failed_probe_with_one_sided_differences():
    """A probe that fails (non-finite answer) is replaced by the centre: FD and SPSA stay finite and close to the
    one-sided difference; a pair with both ends failed gives no information (zero)."""
    holey, twin = _holey(), _twin()
    x = torch.tensor([[0.4995, 0.1, -0.2, 0.3, 0.0], [0.2, 0.1, -0.2, 0.3, 0.0]])
    g = torch.randn(2, 5)
    y = holey.query(x)
    assert torch.isfinite(y).all()
    fd = FiniteDifferenceEstimator(step=1e-3).bind(holey).vjp(x, y, g)
    assert torch.isfinite(fd).all()
    exact = _exact_vjp(twin, x, g)
    assert torch.allclose(fd, exact, rtol=5e-2, atol=5e-3)  # x[0, 0] + h fails: one-sided there
    central = FiniteDifferenceEstimator(step=1e-3).bind(twin).vjp(x, y, g)
    assert not torch.equal(fd[0], central[0])  # the one-sided branch ran
    assert torch.equal(fd[1], FiniteDifferenceEstimator(step=1e-3).bind(twin).vjp(x[1:], y[1:], g[1:])[0])
    spsa = SPSAEstimator(step=1e-3, n_directions=64, seed=1).bind(holey).vjp(x[:1], y[:1], g[:1])
    assert torch.isfinite(spsa).all()
    ref = SPSAEstimator(step=1e-3, n_directions=64, seed=1).bind(twin).vjp(x[:1], y[:1], g[:1])
    assert torch.nn.functional.cosine_similarity(spsa, ref).item() > 0.9
    # both ends failed (a centre that failed too): no information, no NaN
    x_bad = torch.tensor([[0.9, 0.1, -0.2, 0.3, 0.0]])
    y_bad = holey.query(x_bad)
    assert not torch.isfinite(y_bad).any()
    assert torch.equal(SPSAEstimator(step=1e-3, n_directions=4).bind(holey).vjp(x_bad, y_bad, g[:1]),
                       torch.zeros(1, 5))
    assert torch.equal(FiniteDifferenceEstimator(step=1e-3).bind(holey).vjp(x_bad, y_bad, g[:1]), torch.zeros(1, 5))


def test_probes_go_through_the_logged_path(tmp_path):
    twin = _twin(dim=3)
    with QueryLog.create(tmp_path / "l.h5", input_dim=3, output_shape=(3,), run_id="r") as log:
        twin.attach_log(log)
        FiniteDifferenceEstimator().bind(twin).vjp(torch.zeros(2, 3), None, torch.ones(2, 3), iteration=4,
                                                    start=torch.tensor([0, 1]))
    data = read_log(tmp_path / "l.h5")
    assert len(data) == 12 and set(data.purpose_labels()) == {"probe"}
    assert set(data.iteration) == {4} and sorted(set(data.start)) == [0, 1]


def test_finite_differences_stay_inside_the_bounds():
    from conftest import CountingBox

    with CountingBox() as box:
        FiniteDifferenceEstimator(step=0.1).bind(box).vjp(torch.ones(1, 3), None, torch.ones(1, 2))
        probes = torch.cat(box.received)
        assert probes.max() <= 1.0 and probes.min() >= -1.0


def test_exact_needs_a_differentiable_twin():
    from conftest import CountingBox

    with pytest.raises(EstimatorError, match="differentiable twin"):
        ExactEstimator().bind(CountingBox())


def test_surrogate_without_data_says_so():
    est = SurrogateEstimator(SurrogateConfig()).bind(_twin())
    with pytest.raises(EstimatorError, match="no data"):
        est.vjp(torch.zeros(1, 5), torch.zeros(1, 5), torch.ones(1, 5))


@pytest.mark.parametrize("estimator", ["exact", "finite_difference", "spsa", "surrogate", "lgso"])
def test_physical_layer_forward_is_the_blackbox_and_backward_the_estimator(estimator):
    twin = _twin()
    est = {"exact": ExactEstimator(), "finite_difference": FiniteDifferenceEstimator(),
           "spsa": SPSAEstimator(seed=3), "surrogate": SurrogateEstimator(SurrogateConfig(hidden=[16], epochs=1)),
           "lgso": LGSOEstimator(LGSOConfig(hidden=[16], epochs=2))}[estimator]
    layer = PhysicalLayer(twin, est)
    x = (torch.rand(4, 5) * 1.6 - 0.8).requires_grad_(True)
    y = layer(x)
    assert torch.allclose(y, twin.forward_differentiable(x.detach()))
    g = torch.randn(4, 5)
    (y * g).sum().backward()
    assert x.grad is not None and x.grad.shape == (4, 5) and torch.isfinite(x.grad).all()
    if estimator == "exact":
        assert torch.allclose(x.grad, _exact_vjp(twin, x.detach(), g), atol=1e-6)
    if estimator == "surrogate":  # backward = the surrogate's VJP at the same x
        assert torch.allclose(x.grad, est.surrogate.vjp(x.detach(), g), atol=1e-6)


def test_physical_layer_labels_its_queries_for_a_block_and_checks_them_first(tmp_path):
    from hil.errors import InputError
    from hil.querylog import QueryLog, read_log

    twin = _twin(dim=4)
    layer = PhysicalLayer(twin, ExactEstimator())
    model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Tanh(), layer)
    path = tmp_path / "q.h5"
    with QueryLog.create(path, input_dim=4, output_shape=(4,), run_id="r") as log:
        twin.attach_log(log)
        with layer.labels(iteration=7, start=torch.tensor([0, 1])):
            model(torch.rand(2, 3))
        with layer.labels(purpose="evaluation"):
            model(torch.rand(1, 3))
        model(torch.rand(1, 3))
        with pytest.raises(InputError, match="purpose must be one of"), layer.labels(purpose="stepp"):
            pass
    data = read_log(path)
    assert data.iteration.tolist() == [7, 7, -1, -1] and data.start.tolist() == [0, 1, -1, -1]
    assert data.purpose_labels().tolist() == ["step", "step", "evaluation", "step"]


def test_physical_layer_trains_digital_parameters_through_the_twin():
    """A hybrid model: digital linear layer -> physical layer; gradients reach the digital weights."""
    twin = _twin(dim=4)
    layer = PhysicalLayer(twin, ExactEstimator())
    lin = torch.nn.Linear(3, 4)
    opt = torch.optim.Adam(lin.parameters(), lr=0.05)
    inputs = torch.rand(16, 3)
    target = torch.full((16, 4), 0.3)
    losses = []
    for _ in range(40):
        y = layer(torch.tanh(lin(inputs)))
        loss = (y - target).pow(2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0]


def _relative_jacobian_error(loss: str, twin, x, y, centres, jac_true) -> float:
    sur = Surrogate(SurrogateConfig(loss=loss, hidden=[128, 128], epochs=1, k=5, pairs_per_anchor=5,
                                    batch_size=64, seed=0), twin.spec.lower, twin.spec.upper, (x.shape[1],))
    sur.add(x, y)
    sur.fit(epochs=250)
    jac = torch.stack([torch.autograd.functional.jacobian(lambda z: sur.predict(z[None])[0], c) for c in centres])
    return float(((jac - jac_true).flatten(1).norm(dim=1) / jac_true.flatten(1).norm(dim=1)).mean())


def test_gradpie_gradients_beat_mae_on_locally_clustered_data():
    """Points scattered around a few centres, as the online loop produces; gradients at the held-out centres."""
    torch.manual_seed(0)
    d = 8
    twin = CNON(CNON.Config(dim=d, horizon=3.0, steps=30))
    gen = torch.Generator().manual_seed(1)
    centres = torch.rand(20, d, generator=gen) * 1.6 - 0.8
    x = (centres[:, None, :] + 0.05 * torch.randn(20, 10, d, generator=gen)).reshape(-1, d).clamp(-1, 1)
    y = twin.forward_differentiable(x)
    jac_true = torch.stack([torch.autograd.functional.jacobian(lambda z: twin.forward_differentiable(z[None])[0], c)
                            for c in centres])
    err_mae = _relative_jacobian_error("mae", twin, x, y, centres, jac_true)
    err_gradpie = _relative_jacobian_error("gradpie", twin, x, y, centres, jac_true)
    print(f"relative Jacobian error at held-out centres: MAE {err_mae:.3f}, GradPIE {err_gradpie:.3f}")
    assert err_gradpie < 0.5 * err_mae


def test_inverse_distance_pair_weights_follow_their_formula():
    """Eq. 10 with each pair's term over max(d_ij, median/10), the weights scaled to mean 1 over the batch."""
    x = torch.tensor([[0.0, 0.0], [0.1, 0.0], [0.0, 0.4], [0.0, 0.0]])  # rows 0 and 3 coincide
    y = torch.tensor([[0.0], [1.0], [3.0], [0.5]])
    cfg = dict(loss="gradpie", k=2, pairs_per_anchor=2, hidden=[4], seed=0)
    lo, hi = -torch.ones(2), torch.ones(2)
    uniform = Surrogate(SurrogateConfig(**cfg), lo, hi, (1,))
    weighted = Surrogate(SurrogateConfig(**cfg, pair_weight="inverse_distance"), lo, hi, (1,))
    weighted.model.load_state_dict(uniform.model.state_dict())
    for s in (uniform, weighted):
        s.add(x, y)
    idx = torch.arange(4)
    nbr, dist = weighted.knn.neighbours, weighted.knn.distances
    with torch.no_grad():
        f = weighted._net(weighted.x)
        terms = ((f[idx, None] - f[nbr]) - (weighted.y[idx, None] - weighted.y[nbr])).abs().mean(dim=2)  # 4 x 2
        w = 1 / torch.maximum(dist, dist.median() / 10)
        w = w * (w.numel() / w.sum())
        assert float(w.max() / w.min()) > 5  # the coincident pair is capped at median / 10, not infinite
        torch.testing.assert_close(weighted._batch_loss(idx), (terms * w).mean())
        torch.testing.assert_close(uniform._batch_loss(idx), terms.mean())


def _linear_data(n: int, d: int = 3, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    x = torch.rand(n, d, generator=gen) * 2 - 1
    return x, (x @ torch.arange(1.0, d + 1)).unsqueeze(1)


def test_bounded_training_costs_the_same_steps_whatever_the_data():
    """``steps``: a fit runs that many minibatch steps at 100 points and at 5,000 (epochs: n / batch each)."""
    cfg = dict(loss="mse", hidden=[16], batch_size=64, seed=0)
    lo, hi = -torch.ones(3), torch.ones(3)
    for n in (100, 5000):
        bounded = Surrogate(SurrogateConfig(**cfg, steps=7), lo, hi, (1,))
        full = Surrogate(SurrogateConfig(**cfg, epochs=1), lo, hi, (1,))
        for s in (bounded, full):
            s.add(*_linear_data(n))
            s.fit()
        assert bounded.steps_trained == 7
        assert full.steps_trained == -(-n // 64)
        bounded.fit(epochs=2)  # an explicit epoch count (warm-up, offline fit) still means full passes
        assert bounded.steps_trained == 7 + 2 * -(-n // 64)


def test_bounded_minibatches_draw_their_share_from_the_newest_points():
    lo, hi = -torch.ones(3), torch.ones(3)

    def make(fraction: float) -> Surrogate:
        cfg = SurrogateConfig(steps=1, batch_size=200, recent_fraction=fraction, recent_points=50)
        return Surrogate(cfg, lo, hi, (1,))

    only_recent, only_replay, half = make(1.0), make(0.0), make(0.5)
    idx = only_recent.replay_batch(1000)
    assert idx.shape == (200,) and int(idx.min()) >= 950
    idx = only_replay.replay_batch(1000)
    assert int(idx.min()) < 500 and int(idx.max()) < 1000
    idx = half.replay_batch(1000)
    assert int((idx >= 950).sum()) >= 100  # half from the window, plus the replay draws that land in it
    few = half.replay_batch(30)  # fewer points than a batch: still a whole batch, drawn from all 30
    assert few.shape == (200,) and int(few.min()) >= 0 and int(few.max()) < 30 and len(set(few.tolist())) > 20


def test_bounded_training_fits_a_function():
    x, y = _linear_data(2000)
    sur = Surrogate(SurrogateConfig(loss="mse", hidden=[32], steps=400, batch_size=64, lr=3e-3), -torch.ones(3),
                    torch.ones(3), (1,))
    sur.add(x, y)
    first = sur._batch_loss(torch.arange(2000)).item()
    sur.fit()
    assert sur._batch_loss(torch.arange(2000)).item() < 0.05 * first


@pytest.mark.parametrize("key, value", [("steps", 0), ("recent_fraction", 1.5), ("recent_points", 0)])
def test_bounded_training_settings_are_checked(key, value):
    with pytest.raises(ConfigError, match=rf"^estimator\.{key}: must be"):
        parse(SurrogateConfig, {key: value}, "estimator")


@pytest.mark.parametrize("type_, key, value, message", [
    ("surrogate", "lr", float("inf"), "expected a finite number, got inf"),
    ("surrogate", "lr", float("nan"), "expected a finite number, got nan"),
    ("surrogate", "lr", 0, "must be > 0, got 0"),
    ("surrogate", "weight_decay", float("inf"), "expected a finite number"),
    ("surrogate", "weight_decay", -1e-4, "must be >= 0"),
    ("surrogate", "value_weight", float("nan"), "expected a finite number"),
    ("surrogate", "value_weight", -1, "must be >= 0"),
    ("surrogate", "recent_fraction", float("inf"), "expected a finite number"),
    ("surrogate", "k", 0, "must be >= 1"),
    ("surrogate", "hidden", [16, 0], None),
    ("surrogate", "epochs", -1, "must be >= 0"),
    ("surrogate", "bins", 1, "must be >= 2"),
    ("surrogate", "path_steps", 0, "must be >= 1"),
    ("surrogate", "batch_size", 2**70, "must be >= 1 and <= "),  # would overflow torch's sizes when training
    ("surrogate", "seed", 2**64, "must be >= 0 and <= "),         # would overflow torch.manual_seed when built
    ("surrogate", "seed", -1, "must be >= 0"),
    ("finite_difference", "step", float("inf"), "expected a finite number"),
    ("finite_difference", "step", 0.5, "must be > 0 and < 0.5, got 0.5"),
    ("finite_difference", "repeats", 0, "must be >= 1"),
    ("spsa", "step", float("nan"), "expected a finite number"),
    ("spsa", "step", -0.01, "must be > 0"),
    ("spsa", "n_directions", 0, "must be >= 1"),
])
def test_estimator_numbers_are_checked_naming_the_path(type_, key, value, message):
    with pytest.raises(ConfigError) as info:
        parse_typed(ESTIMATORS, {"type": type_, key: value}, "estimator")
    path = "estimator.hidden[1]" if key == "hidden" else f"estimator.{key}"
    assert str(info.value).startswith(f"{path}: "), str(info.value)
    if message is not None:
        assert message in str(info.value)


def test_surrogate_cross_field_and_device_errors_name_the_section_they_are_in():
    for where in ("estimator", "surrogate"):
        with pytest.raises(ConfigError, match=rf"^{where}\.pairs_per_anchor: must be <= k \(2\), got 3$"):
            parse_typed(ESTIMATORS, {"type": "surrogate", "k": 2, "pairs_per_anchor": 3}, where)
        with pytest.raises(ConfigError, match=rf"^{where}\.device: must be one of auto, cpu"):
            parse_typed(ESTIMATORS, {"type": "surrogate", "device": "tpu"}, where)
    cfg = parse(SurrogateConfig, {"loss": "matchopt"}, "estimator")
    assert cfg.value_weight == 1.0 and parse(SurrogateConfig, {}, "estimator").value_weight == 0.0


def test_exact_estimator_model_errors_name_the_nested_key(tmp_path):
    with pytest.raises(ConfigError, match=r"^estimator\.model\.bogus: unknown key"):
        parse_typed(ESTIMATORS, {"type": "exact", "model": {"type": "cnon_twin", "bogus": 1}}, "estimator")
    with pytest.raises(ConfigError, match=r"^estimator\.model\.type: unknown blackbox type 'nope'"):
        parse_typed(ESTIMATORS, {"type": "exact", "model": {"type": "nope"}}, "estimator")
    with pytest.raises(ConfigError, match=r"^estimator\.model\.horizon: expected a finite number"):
        parse_typed(ESTIMATORS, {"type": "exact", "model": {"type": "cnon_twin", "horizon": float("inf")}},
                    "estimator")
    with pytest.raises(ConfigError, match=r"^estimator\.model: config file .*missing\.yaml.* does not exist"):
        parse_typed(ESTIMATORS, {"type": "exact", "model": str(tmp_path / "missing.yaml")}, "estimator")


@pytest.mark.parametrize("options, path, message", [
    ({"target": [0.1, float("inf")]}, "target[1]", "expected a finite number, got inf"),
    ({"target": [float("nan"), 0.2]}, "target[0]", "expected a finite number, got nan"),
    ({"target": [1e39]}, "target[0]", "must be >= -3.40282e+38 and <= 3.40282e+38"),  # inf in float32
    ({"target": []}, "target", "give one value per blackbox output"),
    ({"target_low": float("-inf")}, "target_low", "expected a finite number"),
    ({"target_high": float("nan")}, "target_high", "expected a finite number"),
    ({"target_low": 2.0}, "target_high", "must be > target_low (2), got 1"),
    ({"target_low": -3e38, "target_high": 3e38}, "target_high", "float32"),  # the span overflows float32
    ({"target_seed": 2**64}, "target_seed", "must be >= 0 and <= "),
])
def test_target_distance_options_are_checked_naming_the_path(options, path, message):
    with pytest.raises(ConfigError) as info:
        parse_typed(OBJECTIVES, {"type": "target_distance", **options}, "objective")
    assert str(info.value).startswith(f"objective.{path}: ") and message in str(info.value), str(info.value)


def test_target_distance_target_length_is_checked_when_built():
    section = parse_typed(OBJECTIVES, {"type": "target_distance", "target": [0.0, 1.0, 2.0]}, "objective")
    assert section.build(output_shape=(3,)).target.tolist() == [0.0, 1.0, 2.0]
    with pytest.raises(ConfigError, match=r"^objective\.target: has 3 values; the blackbox outputs 4"):
        section.build(output_shape=(2, 2))
    drawn = parse_typed(OBJECTIVES, {"type": "target_distance", "target_low": -1.5e38, "target_high": 1.5e38},
                        "objective").build(output_shape=(64,))
    assert bool(torch.isfinite(drawn.target).all())


def _concurrent_run(tmp_path, concurrent: bool, name: str):
    from hil.run import execute, load_run_config

    cfg = load_run_config({
        "name": name, "blackbox": {"type": "cnon_twin", "dim": 4, "steps": 8},
        "objective": {"type": "target_distance", "target_seed": 1},
        "estimator": {"type": "surrogate", "hidden": [16], "steps": 5, "batch_size": 16, "concurrent": concurrent},
        "optimizer": {"type": "gradient", "n_starts": 2, "local_samples": 1, "iterations": 12, "seed": 3},
        "log": {"dir": str(tmp_path), "report": False}})
    result = execute(cfg, log_path=tmp_path / f"{name}.h5")
    return result, read_log(tmp_path / f"{name}.h5")


def test_concurrent_training_is_reproducible_and_steps_on_the_previous_surrogate(tmp_path, monkeypatch):
    """Training overlaps the measurements; the log is the same run after run (the step waits for
    a fixed amount of training), and differs from sequential training (each step's surrogate has not trained on
    the batch just measured)."""
    fits = []
    real = SurrogateEstimator._fit_overlapped
    monkeypatch.setattr(SurrogateEstimator, "_fit_overlapped", lambda self: fits.append(1) or real(self))
    a, log_a = _concurrent_run(tmp_path, True, "a")
    # the first step trains in the loop's thread on the first batch; during the second measurement nothing new
    # is untrained; from the third on, each measurement overlaps the training on the batches before it
    assert len(fits) == 10
    _, log_b = _concurrent_run(tmp_path, True, "b")
    _, log_seq = _concurrent_run(tmp_path, False, "seq")
    np.testing.assert_array_equal(log_a.x, log_b.x)
    np.testing.assert_array_equal(log_a.y, log_b.y)
    assert log_a.x.shape == log_seq.x.shape and not np.array_equal(log_a.x, log_seq.x)
    summary = next(iter(log_a.attrs["run_summaries"].values()))
    assert summary["queries"] == 12 * 2 * 2 and 0 < summary["duty_cycle"] <= 1 and summary["iterations"] == 12


def test_a_training_failure_during_a_measurement_reaches_the_loop_after_the_answers_are_logged(tmp_path,
                                                                                                monkeypatch):
    from hil.surrogate import Surrogate as S

    calls = []
    real_fit = S.fit

    def fit_then_fail(self, epochs=None):
        calls.append(1)
        if len(calls) > 2:
            raise RuntimeError("out of memory on the device")
        return real_fit(self, epochs)

    monkeypatch.setattr(S, "fit", fit_then_fail)
    with pytest.raises(EstimatorError, match="training during a measurement failed: out of memory"):
        _concurrent_run(tmp_path, True, "fail")
    log = read_log(tmp_path / "fail.h5")
    assert len(log.x) > 0  # every answered query before the failure is logged


def test_a_concurrent_surrogate_outside_the_loop_still_trains_before_each_gradient():
    """No measurement hook (a physical layer's backward pass): every vjp after new data trains first."""
    est = SurrogateEstimator(SurrogateConfig(hidden=[8], steps=3, concurrent=True))
    est.bind(BLACKBOXES.get("cnon_twin")(BLACKBOXES.get("cnon_twin").Config(dim=3, steps=4)))
    for _ in range(3):
        x = torch.rand(8, 3) * 2 - 1
        est.observe(x, x)
        est.vjp(x[:2], x[:2], torch.ones(2, 3))
    assert est.surrogate.steps_trained == 9 and est.overlapped_fits == 0
