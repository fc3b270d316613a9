"""Physical layer: forward on the BlackBox (bench or twin), backward through a gradient estimator.

Physics-aware training (Wright et al. 2022): the loss is computed on what the
system really did, and only ``dy/dx`` is estimated, so estimator errors bend
the gradient but never the measured loss.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
from torch import nn

from hil.blackbox import BlackBox
from hil.estimators import GradientEstimator


class _PhysicalFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor, layer: PhysicalLayer) -> torch.Tensor:  # type: ignore[override]
        x_sent = layer.blackbox.validate(x)  # what reaches the device (clipped, if the policy says so)
        y = layer.blackbox.query(x_sent, purpose=layer.purpose, iteration=layer.iteration, start=layer.start)
        y = y.to(torch.float32)
        layer.estimator.observe(x_sent, y)
        ctx.layer = layer
        ctx.iteration = layer.iteration
        ctx.start = layer.start
        ctx.save_for_backward(x_sent, y)
        return y

    @staticmethod
    def backward(ctx, grad_y: torch.Tensor) -> tuple[torch.Tensor, None]:  # type: ignore[override]
        x_sent, y = ctx.saved_tensors
        grad_x = ctx.layer.estimator.vjp(x_sent, y, grad_y, iteration=ctx.iteration, start=ctx.start)
        return grad_x, None


class PhysicalLayer(nn.Module):
    """``batch x d_in`` -> ``batch x *output_shape`` float32 via ``blackbox.query``; gradients from ``estimator``.

    Each forward pass's queries are labelled in the log with ``purpose``, ``iteration`` and ``start``: for
    one block of code, ``with layer.labels(iteration=step): loss = f(model(x))`` (restored on exit, also
    inside an ``nn.Sequential``); the labels are checked when set, so a bad one fails before anything is sent.
    """

    def __init__(self, blackbox: BlackBox, estimator: GradientEstimator) -> None:
        super().__init__()
        self.blackbox = blackbox
        self.estimator = estimator.bind(blackbox) if getattr(estimator, "blackbox", None) is not blackbox else estimator
        self.iteration = -1
        self.purpose = "step"
        self.start: torch.Tensor | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _PhysicalFunction.apply(x, self)

    @contextlib.contextmanager
    def labels(self, *, purpose: str | None = None, iteration: int | None = None,
               start: torch.Tensor | None = None) -> Iterator[PhysicalLayer]:
        """Label the queries of the forward passes inside the ``with`` block (unset labels stay as they are);
        ``start``: ``batch`` starting-point indices, one per row of the next batches."""
        saved = (self.purpose, self.iteration, self.start)
        new = (saved[0] if purpose is None else purpose, saved[1] if iteration is None else iteration,
               saved[2] if start is None else start)
        self.blackbox.validate_metadata(len(new[2]) if new[2] is not None else 1, new[0], new[1], new[2])
        self.purpose, self.iteration, self.start = new
        try:
            yield self
        finally:
            self.purpose, self.iteration, self.start = saved
