"""Random search, the gradient-free reference (``optimizer: {type: random}``).

``n_starts`` starts each draw ``per_start`` uniform points of the unit cube per round and keep their best;
the first round's first point of each start is the starting point the gradient optimiser with the same
seed and ``init`` begins from, so the two compare from the same place.
"""

from __future__ import annotations

import torch

from hil.blackbox import BlackBox
from hil.objectives import Objective
from hil.optim.base import Ask, Optimizer, make_ask
from hil.optim.configs import RandomSearchConfig
from hil.registry import OPTIMIZERS
from hil.sampling import latin_hypercube


@OPTIMIZERS.register("random")
class RandomSearch(Optimizer):
    Config = RandomSearchConfig

    def __init__(self, config: Config, *, box: BlackBox, seed: int = 0) -> None:
        self.cfg = config
        self.n_starts = config.n_starts
        self.d = box.spec.input_dim
        self.gen = torch.Generator().manual_seed(seed)
        p = config.n_starts
        self._first = latin_hypercube(p, self.d, self.gen) if config.init == "lhs" else torch.rand(p, self.d,
                                                                                                  generator=self.gen)

    @classmethod
    def from_config(cls, config: Config, *, box: BlackBox, objective: Objective | None = None, estimator=None,
                    seed: int = 0, budget: int | None = None) -> RandomSearch:
        return cls(config, box=box, seed=seed)

    def ask(self, iteration: int, max_queries: int | None) -> Ask | None:
        p, k = self.cfg.n_starts, self.cfg.per_start
        n = p * k if max_queries is None else min(p * k, max_queries)  # the last round may be a partial one
        if n < 1:
            return None
        u = torch.rand(p, k, self.d, generator=self.gen)
        if self._first is not None:
            u[:, 0] = self._first
            self._first = None
        starts = torch.arange(p).repeat_interleave(k)
        order = torch.arange(p * k).reshape(p, k).T.reshape(-1)  # round-robin: a partial round spreads over starts
        return make_ask(u.reshape(p * k, self.d)[order][:n], "population", starts[order][:n])

    def tell(self, asked: Ask, y: torch.Tensor, value: torch.Tensor) -> None:
        """Nothing to learn: the loop's trace keeps each start's best."""
