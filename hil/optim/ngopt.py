"""Nevergrad's optimisers through their ask/tell interface (``optimizer: {type: nevergrad}``).

The default ``optimizer: NGOpt`` is nevergrad's adaptive "wizard", which picks an algorithm from the
dimension, the budget, the number of workers and the bounds (it is the optimiser of nevergrad's quick start);
any other name of ``nevergrad.optimizers.registry`` may be given.
The parametrization is ``ng.p.Array(shape=(d,), lower=0, upper=1)``, the unit cube the loop works in; the
budget nevergrad plans for is the run's ``max_queries`` (or the config's ``budget`` when the run has none),
and ``num_workers`` is ``batch``, the candidates asked per round. Once that budget is spent, ``ask`` returns
``None``. One search: ``n_starts = 1``.

Three things nevergrad 1.0.12 does are put right around every call into it (:class:`_Guard`), because a
resume replays the log through the same optimiser and needs it to ask for exactly the same points:

* Several of NGOpt's choices (``CmaFmin2``, ``MetaModel(CmaFmin2)``: 3 <= d <= 20 with one worker and a
  budget of 50 d to 500 d, the usual device-in-the-loop case) run ``cma.fmin`` in a background thread without
  a seed, so cma seeds numpy's global generator from the clock, and that thread draws from the global
  generator concurrently with the caller. The guard gives each ``cma.fmin`` call a seed from the run's seed,
  swaps in a private state for numpy's global generator for the duration of every call (so nothing outside
  can disturb it, and it disturbs nothing outside), and waits at the end of every call until those threads
  are idle again (blocked waiting for a loss), so that all their work happens inside the guarded call.
* Those background threads are not daemons: one left waiting (the loop stopped before nevergrad's budget was
  spent, an error, Ctrl-C) would keep the interpreter from exiting. The guard makes them daemons.
* ``MetaModel`` converts its surrogate's 1-element prediction with ``float()``, which NumPy 2.4 refuses
  (``TypeError``); the guard turns that error into nevergrad's own ``MetaModelFailure``, on which MetaModel
  falls back to its base optimiser (as it does when the surrogate is unlearnable).

Everything patched is restored when each call returns. Some of nevergrad's choices (``Cobyla``, ``SQP``) are
deterministic methods from the centre: another seed gives the same points there.
"""

from __future__ import annotations

import contextlib
import difflib
import queue
import threading
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch

from hil.blackbox import BlackBox
from hil.errors import ConfigError, OptimizerError
from hil.objectives import Objective
from hil.optim.base import Ask, Optimizer, make_ask, minimisation_values
from hil.optim.configs import NevergradConfig
from hil.registry import OPTIMIZERS

#: seconds ``_Guard`` waits for nevergrad's background threads to become idle before giving up
SETTLE_TIMEOUT_S = 600.0


def _import_nevergrad() -> Any:
    try:
        import nevergrad
    except ImportError as exc:
        raise ConfigError("optimizer type 'nevergrad' needs the nevergrad package: pip install 'hil[peers]'") from exc
    return nevergrad


class _AskQueue(queue.Queue):
    """A background thread's outbox: posting a request (or its end) means it is idle again."""

    def __init__(self, idle: threading.Event) -> None:
        super().__init__()
        self.idle = idle

    def put(self, item: Any, block: bool = True, timeout: float | None = None) -> None:
        super().put(item, block, timeout)
        self.idle.set()


class _TellQueue(queue.Queue):
    """A background thread's inbox: handing it a loss (or a stop) makes it busy until it posts again."""

    def __init__(self, idle: threading.Event) -> None:
        super().__init__()
        self.idle = idle

    def put(self, item: Any, block: bool = True, timeout: float | None = None) -> None:
        self.idle.clear()
        super().put(item, block, timeout)


def _thread_class(base: type, registry: list) -> type:
    """A daemon subclass of nevergrad's ``_MessagingThread`` whose ``idle`` event tells when it waits."""

    class GuardedThread(base):  # type: ignore[misc, valid-type]
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self.daemon = True
            self.idle = threading.Event()
            self.messages_ask = _AskQueue(self.idle)
            self.messages_tell = _TellQueue(self.idle)
            registry.append(self)

        def run(self) -> None:
            try:
                super().run()
            finally:
                self.idle.set()

    return GuardedThread


class _Guard:
    """Makes one nevergrad optimiser deterministic and safe to abandon (module docstring).

    ``with guard():`` around every construction, ``ask`` and ``tell``.
    """

    def __init__(self, seed: int) -> None:
        numpy_seq, cma_seq = np.random.SeedSequence(seed).spawn(2)
        self.numpy_state = np.random.RandomState(np.random.MT19937(numpy_seq)).get_state()
        self.cma_seeds = np.random.default_rng(cma_seq)
        self.threads: list[threading.Thread] = []

    @contextlib.contextmanager
    def __call__(self) -> Iterator[None]:
        from nevergrad.optimization import metamodel, optimizerlib, recaster

        try:
            import cma
        except ImportError:  # nevergrad's CMA variants then fail on their own
            cma = None
        saved = (recaster._MessagingThread, optimizerlib.learn_on_k_best, getattr(cma, "fmin", None),
                 np.random.get_state())
        recaster._MessagingThread = _thread_class(saved[0], self.threads)
        optimizerlib.learn_on_k_best = self._metamodel_fix(saved[1], metamodel.MetaModelFailure)
        if cma is not None:
            cma.fmin = self._seeded(saved[2])
        np.random.set_state(self.numpy_state)
        try:
            yield
            self.settle()
        finally:
            self.numpy_state = np.random.get_state()
            recaster._MessagingThread, optimizerlib.learn_on_k_best = saved[:2]
            if cma is not None:
                cma.fmin = saved[2]
            np.random.set_state(saved[3])

    def _seeded(self, fmin: Any) -> Any:
        def seeded_fmin(*args: Any, **kwargs: Any) -> Any:
            if len(args) > 3:
                args = (*args[:3], self._with_seed(args[3]), *args[4:])
            else:
                kwargs["options"] = self._with_seed(kwargs.get("options"))
            return fmin(*args, **kwargs)

        return seeded_fmin

    def _with_seed(self, options: dict | None) -> dict:
        options = dict(options or {})
        options.setdefault("seed", int(self.cma_seeds.integers(1, 2**31 - 1)))  # cma: 0 or None seed from the clock
        return options

    @staticmethod
    def _metamodel_fix(learn: Any, failure: type[Exception]) -> Any:
        def learn_on_k_best(*args: Any, **kwargs: Any) -> Any:
            try:
                return learn(*args, **kwargs)
            except TypeError as exc:
                if "converted to Python scalars" not in str(exc):
                    raise
                raise failure(f"surrogate prediction not a scalar under this NumPy: {exc}") from exc

        return learn_on_k_best

    def settle(self) -> None:
        """Wait until every background thread of this optimiser is idle (or has ended)."""
        self.threads[:] = [t for t in self.threads if t.is_alive()]
        for t in self.threads:
            if not t.idle.wait(SETTLE_TIMEOUT_S):
                raise OptimizerError(f"nevergrad: a background optimiser thread stayed busy for {SETTLE_TIMEOUT_S:g} s")

    def close(self) -> None:
        """Tell every background thread to end (it is a daemon: nothing waits for it)."""
        for t in self.threads:
            if t.is_alive():
                t.stop()
        self.threads.clear()


@OPTIMIZERS.register("nevergrad")
class NevergradOptimizer(Optimizer):
    """A nevergrad optimiser (default NGOpt) on ``[0, 1]^d``; see the module docstring."""

    Config = NevergradConfig

    def __init__(self, config: Config, *, box: BlackBox, objective: Objective | None = None, seed: int = 0,
                 budget: int | None = None) -> None:
        ng = _import_nevergrad()
        self.cfg = config
        self.sense = getattr(objective, "sense", "min")
        self.d = box.spec.input_dim
        self.budget = int(budget) if budget is not None else config.budget
        self.stop_reason = ""
        self.asked = 0
        self._pending: list[Any] = []
        self._extremes = torch.empty(0, dtype=torch.float64)  # best and worst finite objective values so far
        cls = _lookup(ng, config.optimizer)
        self._guard = _Guard(seed)
        with self._guard():
            parametrization = ng.p.Array(shape=(self.d,), lower=0.0, upper=1.0)
            parametrization.random_state = np.random.RandomState(seed)
            self.opt = cls(parametrization=parametrization, budget=self.budget, num_workers=config.batch)

    @classmethod
    def from_config(cls, config: Config, *, box: BlackBox, objective: Objective | None = None, estimator: Any = None,
                    seed: int = 0, budget: int | None = None) -> NevergradOptimizer:
        _import_nevergrad()
        return cls(config, box=box, objective=objective, seed=seed, budget=budget)

    def ask(self, iteration: int, max_queries: int | None) -> Ask | None:
        """Up to ``batch`` candidates (``n x d`` in ``[0, 1]``), fewer if the budget or ``max_queries`` is smaller."""
        left = self.budget - self.asked
        if left <= 0:
            self.stop_reason = f"nevergrad's budget of {self.budget} candidates is spent"
            self.close()
            return None
        n = min(self.cfg.batch, left, max_queries if max_queries is not None else left)
        if n < 1:
            return None
        with self._guard():
            self._pending = [self.opt.ask() for _ in range(n)]
        self.asked += n
        u = torch.from_numpy(np.stack([np.asarray(c.value, dtype=np.float64) for c in self._pending]))
        return make_ask(u, "population", 0)

    def tell(self, asked: Ask, y: torch.Tensor, value: torch.Tensor) -> None:
        """Tell each candidate its loss (an invalid measurement: worse than anything seen so far)."""
        if len(asked) != len(self._pending):
            raise OptimizerError(f"nevergrad: asked for {len(self._pending)} points and was told {len(asked)}")
        loss = self._losses(value)
        with self._guard():
            for candidate, one in zip(self._pending, loss.tolist(), strict=True):
                self.opt.tell(candidate, float(one))
        self._pending = []

    def _losses(self, value: torch.Tensor) -> torch.Tensor:
        """``n`` float64 losses; non-finite values ranked below every finite one measured so far."""
        value = value.detach().to(torch.float64).cpu().reshape(-1)
        k = self._extremes.numel()
        loss = minimisation_values(torch.cat([self._extremes, value]), self.sense)[k:]
        finite = torch.cat([self._extremes, value[torch.isfinite(value)]])
        if finite.numel():
            self._extremes = torch.stack([finite.min(), finite.max()])
        return loss

    def close(self) -> None:
        """End nevergrad's background threads, if it runs any."""
        self._guard.close()

    def state_summary(self) -> dict[str, Any]:
        chosen = getattr(self.opt, "optim", None)
        return {
            "asked": self.asked,
            "budget": self.budget,
            "optimizer": getattr(chosen, "name", None) or getattr(self.opt, "name", self.cfg.optimizer),
        }


def _lookup(ng: Any, name: str) -> Any:
    registry = ng.optimizers.registry
    if name in registry:
        return registry[name]
    by_lower = {k.lower(): k for k in registry}
    close = [by_lower[k] for k in difflib.get_close_matches(name.lower(), list(by_lower), n=5, cutoff=0.6)]
    hint = f"; close names: {', '.join(close)}" if close else ""
    raise ConfigError(f"optimizer.optimizer: {name!r} is not a nevergrad optimiser (see "
                      f"nevergrad.optimizers.registry){hint}; the default is NGOpt")
