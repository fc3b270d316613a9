"""Versions of the packages a run depends on (stored in every log)."""

from __future__ import annotations

import platform
from importlib.metadata import PackageNotFoundError, version


def package_versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for name in ("hil", "torch", "numpy", "h5py", "pyyaml"):
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            out[name] = "not installed"
    return out
