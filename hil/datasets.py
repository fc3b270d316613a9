"""Datasets for the PNN experiment: the bundled digits, or a lab's own arrays on disk.

::

    dataset: digits                     # scikit-learn's bundled 8x8 digits (no download)
    dataset:                            # a lab's own data: .npz or HDF5
      path: data/fashion_mnist.npz      # relative to the config's folder when not found as given
      images_key: images                # N x H x W (or N x D) numbers, any dtype
      labels_key: labels                # N integer class labels 0..C-1
      limit: null                       # use only the first N samples (quick trials)

Images are flattened and scaled to [0, 1] by the largest value (``uint8`` MNIST: by 255); the split into
training and test sets is scikit-learn's, stratified by label and seeded (the same split every run).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import numpy as np

from hil.config import Range, check, parse
from hil.errors import ConfigError

if TYPE_CHECKING:
    pass

#: ``x_train, y_train, x_test, y_test`` tensors
Split = "tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]"


@dataclass
class FileDataset:
    path: str
    images_key: str = "images"
    labels_key: str = "labels"
    limit: Annotated[int, Range(ge=2)] | None = None  # at least 2 samples to split into training and test

    def __post_init__(self) -> None:
        check(bool(self.path), "path", "give the .npz or HDF5 file")
        check(bool(self.images_key), "images_key", "give the name of the images array")
        check(bool(self.labels_key), "labels_key", "give the name of the labels array")


def parse_dataset(data: Any) -> str | FileDataset:
    """``digits`` or a mapping with ``path`` (see the module docstring)."""
    if data == "digits":
        return "digits"
    if isinstance(data, str):
        raise ConfigError(f"dataset: {data!r} is not a bundled dataset (digits); for a file give "
                          f"dataset: {{path: {data}, images_key: images, labels_key: labels}}")
    return parse(FileDataset, data, "dataset")


def load_dataset(dataset: str | FileDataset, test_fraction: float) -> Split:
    """``(x_train, y_train, x_test, y_test)``: float32 ``N x D`` in [0, 1], int64 labels."""
    if dataset == "digits":
        try:
            from sklearn.datasets import load_digits
        except ImportError as exc:
            raise ConfigError("dataset 'digits' needs scikit-learn: pip install 'hil[optics]'") from exc
        digits = load_digits()
        images, labels = digits.data / 16.0, digits.target  # 4-bit pixels
    else:
        images, labels = _read_arrays(dataset)
    return stratified_split(*_checked(images, labels, dataset), test_fraction)


def _read_arrays(d: FileDataset) -> tuple[np.ndarray, np.ndarray]:
    p = Path(d.path)
    if not p.is_file():
        raise ConfigError(f"dataset.path: {str(p)!r} does not exist")
    if p.suffix == ".npz":
        try:
            with np.load(p, allow_pickle=False) as z:
                keys = list(z.keys())
                arrays = {k: z[k] for k in (d.images_key, d.labels_key) if k in z}
        except (OSError, ValueError) as exc:
            raise ConfigError(f"dataset.path: {p} is not a readable .npz file ({exc})") from exc
    else:
        import h5py

        try:
            with h5py.File(p, "r") as f:
                keys = list(f.keys())
                arrays = {k: f[k][()] for k in (d.images_key, d.labels_key) if k in f}
        except OSError as exc:
            raise ConfigError(f"dataset.path: {p} is neither .npz nor a readable HDF5 file ({exc})") from exc
    for key, name in ((d.images_key, "images_key"), (d.labels_key, "labels_key")):
        if key not in arrays:
            raise ConfigError(f"dataset.{name}: {p} has no array {key!r}; it has {', '.join(keys) or 'none'}. "
                              f"Name the arrays with dataset.images_key and dataset.labels_key")
    images, labels = arrays[d.images_key], arrays[d.labels_key]
    if d.limit is not None:
        images, labels = images[: d.limit], labels[: d.limit]
    return images, labels


def _checked(images: Any, labels: Any, dataset: Any) -> tuple[np.ndarray, np.ndarray]:
    where = "dataset" if dataset == "digits" else f"dataset {dataset.path}"
    images, labels = np.asarray(images), np.asarray(labels)
    if images.dtype.kind not in "biuf" or images.ndim < 2:
        raise ConfigError(f"{where}: images must be numbers, N x H x W or N x D; got dtype {images.dtype}, "
                          f"shape {list(images.shape)}")
    if labels.ndim != 1 or labels.shape[0] != images.shape[0]:
        raise ConfigError(f"{where}: labels must be one integer per image ({images.shape[0]}); got shape "
                          f"{list(labels.shape)}")
    if labels.dtype.kind not in "iu" and not (labels.dtype.kind == "f" and np.all(labels == np.round(labels))):
        raise ConfigError(f"{where}: labels must be integers, got dtype {labels.dtype}")
    x = images.reshape(images.shape[0], -1).astype(np.float64)
    if not np.isfinite(x).all():
        raise ConfigError(f"{where}: images hold NaN or inf values")
    labels = labels.astype(np.int64)
    if labels.min() < 0 or len(np.unique(labels)) < 2:
        raise ConfigError(f"{where}: labels must be classes 0..C-1 with at least 2 classes; got "
                          f"{sorted(np.unique(labels).tolist())[:10]}")
    lo, hi = x.min(), x.max()
    if lo < 0:
        x = x - lo
        hi = hi - lo
    return (x / hi if hi > 0 else x).astype(np.float32), labels


def stratified_split(x: np.ndarray, labels: np.ndarray, test_fraction: float, seed: int = 0) -> Split:
    """scikit-learn's stratified split, seeded (the same split every run)."""
    try:
        from sklearn.model_selection import train_test_split
    except ImportError as exc:
        raise ConfigError("the PNN experiment needs scikit-learn: pip install 'hil[optics]'") from exc
    try:
        x_tr, x_te, y_tr, y_te = train_test_split(x, labels, test_size=test_fraction, random_state=seed,
                                                  stratify=labels)
    except ValueError as exc:
        raise ConfigError(f"dataset: cannot split {len(labels)} samples into training and test sets with "
                          f"training.test_fraction {test_fraction} ({exc})") from exc
    import torch  # the data's tensors: only here, so that checking a config's dataset: needs no torch

    t = torch.from_numpy
    return t(x_tr), t(y_tr), t(x_te), t(y_te)
