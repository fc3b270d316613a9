"""Differentiable surrogates of a BlackBox and the losses that train them.

* ``mse`` / ``mae``: fit values, ``1/N sum_i |f(x_i) - y_i|`` (the base models).
* ``gradpie``: fit local differences, ``1/(N k) sum_i sum_{j in N_k(i)}
  |(f(x_i) - f(x_j)) - (y_i - y_j)|`` (paper 000, eq. 10). With
  ``pair_weight: inverse_distance`` each pair's term is divided by
  ``max(|x_i - x_j|, d_min)`` (weights normalised to mean 1 over a minibatch's
  pairs; ``d_min`` a tenth of their median distance): every pair then counts
  as one directional-derivative error whatever its length, and the short pairs,
  for which the gradient theorem's first-order step (eq. 8) is most accurate,
  are not outweighed by long ones. Each minibatch
  step uses ``pairs_per_anchor`` of the ``k`` pairs of each anchor, drawn at
  random (an unbiased estimate of eq. 10 at ``(1 + pairs_per_anchor) / (1 + k)``
  of the cost; ``pairs_per_anchor = k`` uses them all). By the gradient
  theorem this aligns the surrogate's Jacobian with the true one on close pairs,
  and it is invariant to a global offset of ``f`` and ``y`` (drifting hardware).

* ``matchopt``: gradient matching along monotonic trajectories (paper 001, :mod:`hil.matchopt`): the data
  are sorted into ``bins`` percentile bins of each point's score (its objective, given to :meth:`Surrogate.add`
  by the offline optimiser), and each minibatch step matches the surrogate's path integrals
  (``path_steps`` Riemann points) to the measured differences along ``max(1, batch_size // bins)``
  trajectories, plus ``value_weight`` (null: 1) times the regression term.

A :class:`Surrogate` owns its data: points are added as they are measured, the
k-NN pairs are updated incrementally, and :meth:`Surrogate.fit` trains on
everything seen so far, in one of two ways:

* ``epochs`` (the paper's, when a config gives ``epochs``): full passes over all data,
  so a fit's cost grows with the data and a run's cost quadratically;
* ``steps`` (bounded, the default: 20): a fixed number of minibatch steps, each minibatch drawn
  with replacement, ``recent_fraction`` of it from the ``recent_points`` newest
  points (those measured around the current iterates: recent and local) and
  the rest from all data (a replay buffer), so a fit costs the same at
  iteration 10 and at iteration 10,000. Inputs are normalised to ``[-1, 1]`` by the
BlackBox bounds and outputs are standardised by the first data seen.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from hil.device import resolve_device
from hil.estimator_configs import INT64_MAX, Count, LossName, SurrogateConfig  # noqa: F401  (re-exported)
from hil.knn import KNNPairs
from hil.matchopt import matchopt_loss, percentile_bins, sample_trajectories


def _inverse_distance_weights(dist: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """``b x k`` weights ``1 / max(d, median / 10)`` over the valid pairs, scaled to mean 1 (0 elsewhere)."""
    floor = dist[valid].median() / 10
    w = torch.where(valid, 1 / torch.maximum(dist, floor).clamp_min(1e-12), torch.zeros_like(dist))
    return w * (valid.sum() / w.sum())


class MLP(nn.Module):
    """``batch x d_in`` -> ``batch x d_out``; GELU hidden layers, optional LayerNorm (paper's Table 3)."""

    def __init__(self, d_in: int, d_out: int, hidden: Sequence[int], layer_norm: bool = False) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        width = d_in
        for h in hidden:
            layers.append(nn.Linear(width, h))
            if layer_norm:
                layers.append(nn.LayerNorm(h))
            layers.append(nn.GELU())
            width = h
        layers.append(nn.Linear(width, d_out))
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class Surrogate:
    """A trainable differentiable model of a BlackBox with its own growing dataset."""

    def __init__(self, config: SurrogateConfig, lower: torch.Tensor, upper: torch.Tensor,
                 output_shape: tuple[int, ...]) -> None:
        self.config = config
        self.device = resolve_device(config.device)
        self.lower = lower.to(self.device, torch.float32)
        self.span = (upper - lower).to(self.device, torch.float32)
        self.output_shape = tuple(output_shape)
        d_out = 1
        for s in self.output_shape:
            d_out *= s
        self.d_out = d_out
        self._gen = torch.Generator().manual_seed(config.seed)
        with torch.random.fork_rng():
            torch.manual_seed(config.seed)
            d_features = len(lower) * (2 if config.input_features == "phase" else 1)
            self.model = MLP(d_features, d_out, config.hidden, config.layer_norm).to(self.device)
        self.optim = torch.optim.Adam(self.model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
        self.x = torch.empty(0, len(lower), device=self.device)  # normalised inputs, n x d_in
        self.y = torch.empty(0, d_out, device=self.device)       # standardised outputs, n x d_out
        self.y_mean: torch.Tensor | None = None
        self.y_std: torch.Tensor | None = None
        self.knn = KNNPairs(config.k) if config.loss == "gradpie" else None
        self.scores = torch.empty(0)  # matchopt: each point's score (its objective), on the CPU
        self._bins: list[torch.Tensor] | None = None
        self.steps_trained = 0

    # -- data ----------------------------------------------------------------------
    def normalise(self, x: torch.Tensor) -> torch.Tensor:
        """Physical inputs (any device) -> ``[-1, 1]`` on the surrogate's device."""
        return 2 * (x.to(self.device, torch.float32) - self.lower) / self.span - 1

    def _net(self, xn: torch.Tensor) -> torch.Tensor:
        """The MLP on normalised inputs; ``phase`` features treat each input's bounds as one period."""
        if self.config.input_features == "phase":
            angle = torch.pi * (xn + 1)
            xn = torch.cat([torch.cos(angle), torch.sin(angle)], dim=1)
        return self.model(xn)

    def add(self, x: torch.Tensor, y: torch.Tensor, scores: torch.Tensor | None = None) -> None:
        """Add measured pairs: ``b x d_in`` inputs, ``b x *output_shape`` outputs (non-finite rows are skipped);
        ``scores`` (``b``, lower is better): each point's objective, which the ``matchopt`` loss needs."""
        y = y.detach().to(self.device, torch.float32).reshape(y.shape[0], -1)
        keep = torch.isfinite(y).all(dim=1)
        if self.config.loss == "matchopt":
            if scores is None:
                raise ValueError("the matchopt loss needs each point's score (its objective): give scores=")
            scores = scores.detach().to(torch.float32).cpu().reshape(-1)
            keep &= torch.isfinite(scores).to(keep.device)
            self.scores = torch.cat([self.scores, scores[keep.cpu()]])
            self._bins = None
        if not bool(keep.any()):
            return
        x, y = x.detach().to(self.device)[keep], y[keep]
        if self.y_mean is None:
            self.y_mean = y.mean(dim=0)
            std = y.std(dim=0) if y.shape[0] > 1 else torch.ones(self.d_out, device=self.device)
            if self.config.output_scale == "per_output":
                self.y_std = torch.where(std > 1e-8 * std.max().clamp_min(1e-30), std, torch.ones_like(std))
            else:
                scale = std.mean().clamp_min(1e-8)  # one scale for all outputs keeps their relative weight
                self.y_std = torch.full((self.d_out,), float(scale), device=self.device)
        xn = self.normalise(x)
        self.x = torch.cat([self.x, xn])
        self.y = torch.cat([self.y, (y - self.y_mean) / self.y_std])
        if self.knn is not None:
            self.knn.add(xn)

    def __len__(self) -> int:
        return self.x.shape[0]

    # -- model ---------------------------------------------------------------------
    def predict(self, x: torch.Tensor) -> torch.Tensor:
        """Differentiable prediction in physical units: ``batch x d_in`` -> ``batch x *output_shape``, on
        ``x``'s device."""
        if self.y_mean is None:
            raise RuntimeError("the surrogate has no data yet")
        out = self._net(self.normalise(x)) * self.y_std + self.y_mean
        return out.reshape(x.shape[0], *self.output_shape).to(x.device)

    def _batch_loss(self, idx: torch.Tensor) -> torch.Tensor:
        cfg = self.config
        idx = idx.to(self.device)
        if cfg.loss in ("mse", "mae"):
            err = self._net(self.x[idx]) - self.y[idx]
            return err.pow(2).mean() if cfg.loss == "mse" else err.abs().mean()
        if cfg.loss == "matchopt":
            return self._matchopt_loss()
        nbr, dist = self.knn.neighbours[idx], self.knn.distances[idx]  # b x k
        if cfg.pairs_per_anchor < cfg.k:  # an unbiased subsample of the k pairs: (1 + pairs) forward rows per anchor
            pick = torch.rand(nbr.shape, generator=self._gen).argsort(dim=1)[:, : cfg.pairs_per_anchor]
            pick = pick.to(self.device)
            nbr, dist = torch.gather(nbr, 1, pick), torch.gather(dist, 1, pick)
        valid = nbr >= 0
        nbr = torch.where(valid, nbr, idx.unsqueeze(1))  # self pairs contribute zero
        b, k = nbr.shape
        pred = self._net(torch.cat([self.x[idx], self.x[nbr.reshape(-1)]]))
        f_i, f_j = pred[:b].unsqueeze(1), pred[b:].reshape(b, k, -1)
        y_i, y_j = self.y[idx].unsqueeze(1), self.y[nbr]
        diff = ((f_i - f_j) - (y_i - y_j)).abs().mean(dim=2)  # b x k
        if cfg.pair_weight == "inverse_distance" and bool(valid.any()):
            diff = diff * _inverse_distance_weights(dist, valid)
        loss = (diff * valid).sum() / valid.sum().clamp_min(1)
        if cfg.value_weight > 0:
            loss = loss + cfg.value_weight * (pred[:b] - self.y[idx]).abs().mean()
        return loss

    def _matchopt_loss(self) -> torch.Tensor:
        if self._bins is None:
            self._bins = percentile_bins(self.scores, self.config.bins)
        n = max(1, self.config.batch_size // self.config.bins)
        trajectories = sample_trajectories(self._bins, n, self._gen).to(self.device)
        return matchopt_loss(self._net, self.x, self.y, trajectories, steps=self.config.path_steps,
                             value_weight=self.config.value_weight)

    def fit(self, epochs: int | None = None) -> float:
        """Train on the data seen so far and return the mean loss of the last epoch (or of the steps).

        ``epochs`` given (a warm-up or an offline fit): that many full passes. Otherwise the configured
        training: ``steps`` bounded minibatch steps, or ``epochs`` full passes when ``steps`` is null.
        """
        bounded = epochs is None and self.config.steps is not None
        epochs = (self.config.epochs or 0) if epochs is None else epochs
        n = len(self)
        if n == 0 or (epochs == 0 and not bounded):
            return float("nan")
        if self.config.loss in ("gradpie", "matchopt") and n < 2:
            return float("nan")
        self.model.train()
        with torch.enable_grad():  # fit() may run inside a physical layer's backward pass
            last = self._steps(n, self.config.steps) if bounded else self._epochs(n, epochs)
        self.model.eval()
        return last

    def _step(self, idx: torch.Tensor) -> float:
        loss = self._batch_loss(idx)
        self.optim.zero_grad(set_to_none=True)
        loss.backward()
        self.optim.step()
        self.steps_trained += 1
        return loss.item()

    def replay_batch(self, n: int) -> torch.Tensor:
        """Indices of one bounded-training minibatch over ``n`` points: ``batch_size`` draws with replacement,
        ``recent_fraction`` of them from the newest ``recent_points`` and the rest from all (also while there
        are fewer points than a batch, so that every step costs the same)."""
        b = self.config.batch_size
        n_recent = round(self.config.recent_fraction * b)
        window = min(self.config.recent_points, n)
        recent = torch.randint(n - window, n, (n_recent,), generator=self._gen)
        replay = torch.randint(0, n, (b - n_recent,), generator=self._gen)
        return torch.cat([recent, replay])

    def _steps(self, n: int, steps: int) -> float:
        return sum(self._step(self.replay_batch(n)) for _ in range(steps)) / steps

    def _epochs(self, n: int, epochs: int) -> float:
        last = float("nan")
        for _ in range(epochs):
            perm = torch.randperm(n, generator=self._gen)
            total, count = 0.0, 0
            for lo in range(0, n, self.config.batch_size):
                idx = perm[lo: lo + self.config.batch_size]
                total += self._step(idx) * len(idx)
                count += len(idx)
            last = total / count
        return last

    def vjp(self, x: torch.Tensor, grad_y: torch.Tensor) -> torch.Tensor:
        """``J_f(x)^T grad_y`` for ``batch x d_in`` points and ``batch x *output_shape`` cotangents."""
        xr = x.detach().to(torch.float32).requires_grad_(True)
        with torch.enable_grad():
            out = self.predict(xr)
            (g,) = torch.autograd.grad(out, xr, grad_outputs=grad_y.to(out.dtype).reshape(out.shape))
        return g
