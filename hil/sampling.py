"""Space-filling samples in the unit box, mapped to a BlackBox's bounds."""

from __future__ import annotations

import torch


def latin_hypercube(n: int, d: int, generator: torch.Generator) -> torch.Tensor:
    """``n x d`` Latin hypercube sample in ``[0, 1]^d``: each column hits each of ``n`` strata once."""
    if n < 1 or d < 1:
        raise ValueError(f"latin_hypercube needs n, d >= 1, got n={n}, d={d}")
    strata = torch.argsort(torch.rand(d, n, generator=generator), dim=1).T.to(torch.float32)  # n x d
    return (strata + torch.rand(n, d, generator=generator)) / n


def to_bounds(u: torch.Tensor, lower: torch.Tensor, upper: torch.Tensor) -> torch.Tensor:
    """Map unit-box points ``batch x d`` to ``[lower, upper]``."""
    return lower + u * (upper - lower)
