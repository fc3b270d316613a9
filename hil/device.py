"""Where tensors live: ``device: auto | cpu | cuda | cuda:N`` in a twin's or a surrogate's config.

``auto`` picks the first GPU when torch sees one, else the CPU. Whatever the device, a BlackBox's
``query`` and a surrogate's ``predict``/``vjp`` take inputs on any device and return CPU tensors or
tensors on the caller's device (documented per method), so the loop, the log and the optimisers never
assume where a model computes.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from hil.errors import ConfigError

if TYPE_CHECKING:
    import torch

DEVICE_CHOICES = "auto, cpu, cuda or cuda:N"


def resolve_device(name: str, key: str = "device") -> torch.device:
    """The torch device ``name`` stands for; ``key`` (as the user wrote it) names it in errors."""
    import torch

    if not isinstance(name, str):
        raise ConfigError(f"{key} must be one of {DEVICE_CHOICES}, got {name!r}")
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except (RuntimeError, ValueError):
        raise ConfigError(f"{key} must be one of {DEVICE_CHOICES}, got {name!r}") from None
    if device.type not in ("cpu", "cuda"):
        raise ConfigError(f"{key} must be one of {DEVICE_CHOICES}, got {name!r}")
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError(f"{key} is {name!r} but torch sees no GPU here (torch.cuda.is_available() is "
                              "False); write auto or cpu")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise ConfigError(f"{key} is {name!r} but torch sees {torch.cuda.device_count()} GPU(s)")
    return device


def check_device(name: str) -> None:
    """For a Config's ``__post_init__``: ``device:`` names a torch device this machine has
    (:func:`resolve_device`), the error naming the field ``device`` (``parse`` puts the section's path in front:
    ``blackbox.device``, ``estimator.device``, ``surrogate.device``)."""
    from hil.config import FieldError

    if name in ("auto", "cpu"):  # any machine has these: no need to import torch to check a config
        return
    if not isinstance(name, str) or not re.fullmatch(r"cuda(:\d+)?", name):
        raise FieldError("device", f"must be one of {DEVICE_CHOICES}, got {name!r}")
    try:
        resolve_device(name, "device")
    except ConfigError as exc:
        raise FieldError("device", str(exc).removeprefix("device ")) from None
