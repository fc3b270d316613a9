"""Conditional generative models ``p(y | c)`` of a stochastic BlackBox's answers, for L-GSO (:mod:`hil.lgso`).

A model is registered in :data:`GENERATIVE_MODELS` and implements three methods on standardised data:

* ``log_prob(y, c)``: ``b x d_y`` answers given ``b x d_c`` conditions -> ``b`` log densities (training by
  maximum likelihood);
* ``expectation(c, fn, n_samples, generator)``: ``E_{y ~ p(.|c)}[fn(y)]`` for each condition (``b``),
  estimated with ``n_samples`` generated answers and differentiable with respect to ``c``: L-GSO's gradient;
* ``mean(c)``: ``b x d_y`` expected answers (differentiable; the Jacobian a physical layer's backward pass
  uses) and ``sample(c, n, generator)``: ``b x n x d_y`` draws (for checking the fit).

The one shipped model is a **mixture density network** (Bishop 1994): an MLP maps ``c`` to the weights,
means and diagonal standard deviations of ``components`` Gaussians. Why it and not the paper's GAN or FFJORD:
it trains by plain maximum likelihood (no adversarial game to balance, no ODE solver), a few hundred Adam
steps on a CPU core fit it, its expectation is a weighted sum of reparameterised Gaussian draws (so the
gradient needs no score-function trick across the mixture choice), and a mixture captures what the L-GSO
problems' answers are: multimodal (three-hump's two branches) and heteroscedastic. A conditional flow or a
diffusion model plugs in as another entry with the same three methods.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
from torch import nn

from hil.registry import GENERATIVE_MODELS

LOG_SIGMA_MIN = -7.0  # standardised units: a deterministic BlackBox must not drive the density to infinity


def _trunk(d_in: int, hidden: Sequence[int]) -> tuple[nn.Module, int]:
    layers: list[nn.Module] = []
    width = d_in
    for h in hidden:
        layers += [nn.Linear(width, h), nn.Tanh()]
        width = h
    return nn.Sequential(*layers), width


@GENERATIVE_MODELS.register("mdn")
class MixtureDensityNetwork(nn.Module):
    """``p(y | c) = sum_k pi_k(c) N(y; mu_k(c), diag sigma_k(c)^2)`` (``c``: ``b x d_c``, ``y``: ``b x d_y``)."""

    def __init__(self, d_c: int, d_y: int, *, components: int = 5, hidden: Sequence[int] = (64, 64)) -> None:
        super().__init__()
        self.d_y, self.k = d_y, components
        self.trunk, width = _trunk(d_c, hidden)
        self.head = nn.Linear(width, components * (1 + 2 * d_y))

    def params(self, c: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``log pi`` (``b x K``), ``mu`` and ``log sigma`` (``b x K x d_y``)."""
        out = self.head(self.trunk(c))
        b, k, d = c.shape[0], self.k, self.d_y
        log_pi = torch.log_softmax(out[:, :k], dim=1)
        mu = out[:, k: k + k * d].reshape(b, k, d)
        log_sigma = out[:, k + k * d:].reshape(b, k, d).clamp(LOG_SIGMA_MIN, 5.0)
        return log_pi, mu, log_sigma

    def log_prob(self, y: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        log_pi, mu, log_sigma = self.params(c)
        z = (y.unsqueeze(1) - mu) * torch.exp(-log_sigma)
        per = -0.5 * z.pow(2) - log_sigma - 0.5 * math.log(2 * math.pi)  # b x K x d
        return torch.logsumexp(log_pi + per.sum(dim=2), dim=1)

    def mean(self, c: torch.Tensor) -> torch.Tensor:
        log_pi, mu, _ = self.params(c)
        return (log_pi.exp().unsqueeze(2) * mu).sum(dim=1)

    def expectation(self, c: torch.Tensor, fn: Callable[[torch.Tensor], torch.Tensor], n_samples: int,
                    generator: torch.Generator | None = None) -> torch.Tensor:
        """``sum_k pi_k mean_j fn(mu_k + sigma_k eps_j)``: the same ``n_samples`` normal draws ``eps`` for
        every component (common random numbers), so the estimate is smooth in ``c``."""
        log_pi, mu, log_sigma = self.params(c)
        b, k, d = mu.shape
        eps = torch.randn(n_samples, d, generator=generator).to(mu)
        y = mu.unsqueeze(2) + log_sigma.exp().unsqueeze(2) * eps  # b x K x n x d
        values = fn(y.reshape(b * k * n_samples, d)).reshape(b, k, n_samples)
        return (log_pi.exp() * values.mean(dim=2)).sum(dim=1)

    def sample(self, c: torch.Tensor, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        log_pi, mu, log_sigma = self.params(c)
        b = c.shape[0]
        pick = torch.multinomial(log_pi.exp().cpu(), n, replacement=True, generator=generator).to(c.device)
        idx = pick.unsqueeze(2).expand(b, n, self.d_y)
        m, s = torch.gather(mu, 1, idx), torch.gather(log_sigma.exp(), 1, idx)
        return m + s * torch.randn(m.shape, generator=generator).to(m)


class GenerativeSurrogate:
    """A registered model with its own output standardisation and optimiser, trained by maximum likelihood.

    ``fit(c, y, epochs)`` standardises ``y`` (``n x d_y``) by that data's mean and spread and takes ``epochs``
    passes of minibatch Adam on the negative log likelihood, continuing from the weights it has (warm start);
    :meth:`expectation`, :meth:`mean` and :meth:`sample` speak physical units.
    """

    def __init__(self, d_c: int, d_y: int, *, model: str = "mdn", components: int = 5,
                 hidden: Sequence[int] = (64, 64), lr: float = 1e-3, batch_size: int = 256, seed: int = 0,
                 device: torch.device | str = "cpu") -> None:
        self.generator = torch.Generator().manual_seed(seed)
        with torch.random.fork_rng():
            torch.manual_seed(seed)
            self.model = GENERATIVE_MODELS.get(model)(d_c, d_y, components=components, hidden=hidden).to(device)
        self.optim = torch.optim.Adam(self.model.parameters(), lr=lr)
        self.batch_size = batch_size
        self.device = torch.device(device)
        self.y_mean = torch.zeros(d_y, device=self.device)
        self.y_std = torch.ones(d_y, device=self.device)

    def fit(self, c: torch.Tensor, y: torch.Tensor, epochs: int) -> float:
        """Train on ``n x d_c`` conditions and ``n x d_y`` answers; returns the last epoch's mean NLL."""
        c, y = c.to(self.device, torch.float32), y.to(self.device, torch.float32)
        n = c.shape[0]
        self.y_mean = y.mean(dim=0)
        std = y.std(dim=0) if n > 1 else torch.ones_like(self.y_mean)
        self.y_std = torch.where(std > 1e-8, std, torch.ones_like(std))
        ys = (y - self.y_mean) / self.y_std
        last = math.nan
        self.model.train()
        with torch.enable_grad():
            for _ in range(epochs):
                perm = torch.randperm(n, generator=self.generator)
                total = 0.0
                for lo in range(0, n, self.batch_size):
                    idx = perm[lo: lo + self.batch_size].to(self.device)
                    loss = -self.model.log_prob(ys[idx], c[idx]).mean()
                    self.optim.zero_grad(set_to_none=True)
                    loss.backward()
                    self.optim.step()
                    total += loss.item() * len(idx)
                last = total / n
        self.model.eval()
        return last

    def _physical(self, y: torch.Tensor) -> torch.Tensor:
        return y * self.y_std + self.y_mean

    def expectation(self, c: torch.Tensor, fn: Callable[[torch.Tensor], torch.Tensor], n_samples: int) -> torch.Tensor:
        """``E[fn(y)]`` per condition (``b``); ``fn`` maps ``m x d_y`` physical answers to ``m`` values."""
        return self.model.expectation(c.to(self.device), lambda ys: fn(self._physical(ys)), n_samples,
                                      self.generator)

    def mean(self, c: torch.Tensor) -> torch.Tensor:
        return self._physical(self.model.mean(c.to(self.device)))

    def sample(self, c: torch.Tensor, n: int) -> torch.Tensor:
        with torch.no_grad():
            return self._physical(self.model.sample(c.to(self.device), n, self.generator))
