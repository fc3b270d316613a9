"""MATCH-OPT's surrogate loss (paper 001): gradient matching along monotonic trajectories, plus regression.

The data are sorted into ``n_bins`` percentile bins of a score (the objective of each point). A *trajectory*
is one point drawn from each non-empty bin, in increasing score: a monotonic path through the data. For each
consecutive pair ``(u, v)`` of a trajectory the gradient theorem says ``y_v - y_u = int_0^1 J_f(x_u + t (x_v -
x_u)) (x_v - x_u) dt``; MATCH-OPT matches the surrogate's path integral, by the left Riemann sum of ``steps``
points (the authors use 5), to the measured difference, and adds the plain regression term::

    L = mean_pairs |sum_{i<steps} J_f(x_u + (i / steps) d) d / steps - (y_v - y_u)|^2 + value_weight * mean |f(x) - y|^2

with ``d = x_v - x_u``. Each Jacobian-vector product is one forward-mode pass (``torch.func.jvp``), so the
loss costs ``steps`` forward passes per pair, and it differentiates through them to the surrogate's weights.
For vector outputs (a camera image) the same identity holds per output; the trajectory is ordered by the score.
"""

from __future__ import annotations

from collections.abc import Callable

import torch


def percentile_bins(scores: torch.Tensor, n_bins: int) -> list[torch.Tensor]:
    """Indices of ``scores`` (``N``) in each of ``n_bins`` equal-count bins, lowest scores first; empty bins
    are dropped (fewer points than bins)."""
    order = torch.argsort(scores)
    return [chunk for chunk in torch.tensor_split(order, n_bins) if chunk.numel()]


def sample_trajectory(bins: list[torch.Tensor], scores: torch.Tensor,
                      generator: torch.Generator | None = None) -> torch.Tensor:
    """One random point of each bin, sorted by score (``len(bins)`` indices): monotonic in the score."""
    picks = torch.stack([b[torch.randint(len(b), (1,), generator=generator)][0] for b in bins])
    return picks[torch.argsort(scores[picks])]


def sample_trajectories(bins: list[torch.Tensor], n: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """``n`` trajectories at once (``n x len(bins)`` indices), one random point of each bin per row: the bins
    are equal-count slices of the sorted scores, so every row is already in increasing score."""
    return torch.stack([b[torch.randint(len(b), (n,), generator=generator)] for b in bins], dim=1)


def path_integral(f: Callable[[torch.Tensor], torch.Tensor], x_u: torch.Tensor, x_v: torch.Tensor,
                  steps: int = 5) -> torch.Tensor:
    """``sum_{i<steps} J_f(x_u + (i / steps) d) d / steps`` for each pair (``pairs x d_in`` ->
    ``pairs x *output``), by forward-mode Jacobian-vector products."""
    d = x_v - x_u
    total = None
    for i in range(steps):
        _, jv = torch.func.jvp(f, (x_u + (i / steps) * d,), (d,))
        total = jv if total is None else total + jv
    return total / steps


def matchopt_loss(f: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, y: torch.Tensor,
                  trajectory: torch.Tensor, *, steps: int = 5, value_weight: float = 1.0) -> torch.Tensor:
    """The loss on one trajectory (``m`` indices into ``x``: ``N x d_in``, ``y``: ``N x *output``) or on several
    (``T x m``: the mean over all their consecutive pairs)."""
    t = trajectory.reshape(-1, trajectory.shape[-1])
    u, v = t[:, :-1].reshape(-1), t[:, 1:].reshape(-1)
    predicted = path_integral(f, x[u], x[v], steps)
    match = (predicted - (y[v] - y[u])).pow(2).mean()
    if value_weight == 0:
        return match
    rows = t.reshape(-1)
    return match + value_weight * (f(x[rows]) - y[rows]).pow(2).mean()
