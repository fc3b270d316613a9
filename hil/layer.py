"""Physical layer: forward on the BlackBox (bench or twin), backward through a gradient estimator.

Physics-aware training (Wright et al. 2022): the loss is computed on what the
system really did, and only ``dy/dx`` is estimated, so estimator errors bend
the gradient but never the measured loss.
"""

from __future__ import annotations

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

    ``iteration``, ``purpose`` and ``start`` label the queries in the log; set
    them before a forward pass (the training loop does).
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
