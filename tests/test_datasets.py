"""The PNN experiment on a lab's own data: .npz and HDF5 files, their layout checked with clear errors."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import h5py
import numpy as np
import pytest
import yaml

from hil.datasets import FileDataset, load_dataset, parse_dataset
from hil.errors import ConfigError
from hil.pnn import load_pnn_config, run_pnn_experiment

pytest.importorskip("torchoptics")
pytest.importorskip("sklearn")

ROOT = Path(__file__).resolve().parent.parent


def blobs(n: int = 240, side: int = 12, classes: int = 4, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``n`` uint8 images: class c is a bright blob in quadrant c, plus noise (an MNIST-like layout)."""
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % classes
    yy, xx = np.mgrid[:side, :side]
    images = np.zeros((n, side, side))
    for i, c in enumerate(labels):
        cy, cx = (side / 4) * (1 + 2 * (c // 2)), (side / 4) * (1 + 2 * (c % 2))
        images[i] = np.exp(-((yy - cy - rng.normal(0, 0.7)) ** 2 + (xx - cx - rng.normal(0, 0.7)) ** 2) / 4.0)
    images = np.clip(images * 230 + rng.normal(0, 10, images.shape), 0, 255)
    return images.astype(np.uint8), labels.astype(np.int64)


def test_npz_and_hdf5_give_the_same_stratified_split(tmp_path):
    images, labels = blobs()
    np.savez(tmp_path / "d.npz", images=images, labels=labels)
    with h5py.File(tmp_path / "d.h5", "w") as f:
        f["x"], f["y"] = images, labels
    a = load_dataset(FileDataset(str(tmp_path / "d.npz")), 0.25)
    b = load_dataset(FileDataset(str(tmp_path / "d.h5"), images_key="x", labels_key="y"), 0.25)
    for u, v in zip(a, b, strict=True):
        assert np.array_equal(u.numpy(), v.numpy())
    x_tr, y_tr, x_te, y_te = a
    assert x_tr.shape == (180, 144) and x_te.shape == (60, 144)
    assert float(x_tr.min()) >= 0 and float(x_tr.max()) == pytest.approx(1.0)
    assert np.bincount(y_te.numpy()).tolist() == [15, 15, 15, 15]  # stratified


def test_a_wrong_layout_is_refused_naming_the_key(tmp_path):
    images, labels = blobs(40)
    np.savez(tmp_path / "wrong.npz", pictures=images, labels=labels)
    with pytest.raises(ConfigError, match="images_key.*has no array 'images'; it has pictures, labels"):
        load_dataset(FileDataset(str(tmp_path / "wrong.npz")), 0.25)
    np.savez(tmp_path / "short.npz", images=images, labels=labels[:-3])
    with pytest.raises(ConfigError, match="one integer per image"):
        load_dataset(FileDataset(str(tmp_path / "short.npz")), 0.25)
    np.savez(tmp_path / "float.npz", images=images, labels=labels + 0.5)
    with pytest.raises(ConfigError, match="labels must be integers"):
        load_dataset(FileDataset(str(tmp_path / "float.npz")), 0.25)
    bad = images.astype(float)
    bad[3, 2, 2] = np.nan
    np.savez(tmp_path / "nan.npz", images=bad, labels=labels)
    with pytest.raises(ConfigError, match="NaN"):
        load_dataset(FileDataset(str(tmp_path / "nan.npz")), 0.25)
    (tmp_path / "junk.h5").write_text("not hdf5")
    with pytest.raises(ConfigError, match="neither .npz nor a readable HDF5"):
        load_dataset(FileDataset(str(tmp_path / "junk.h5")), 0.25)
    with pytest.raises(ConfigError, match="does not exist"):
        load_dataset(FileDataset(str(tmp_path / "missing.npz")), 0.25)


def test_pnn_trains_on_a_file_dataset_next_to_its_config(tmp_path):
    images, labels = blobs()
    np.savez(tmp_path / "blobs.npz", images=images, labels=labels)
    cfg = dataclasses.asdict(load_pnn_config(ROOT / "configs" / "pnn_digits.yaml"))
    cfg.update(dataset={"path": "blobs.npz"}, modes=["in_silico"], log={"dir": str(tmp_path)})
    cfg["training"].update(epochs=3, seeds=[0], test_fraction=0.25)
    (tmp_path / "pnn.yaml").write_text(yaml.safe_dump(cfg))
    config = load_pnn_config(tmp_path / "pnn.yaml")  # the data file is found beside the config
    result = run_pnn_experiment(config, log_path=tmp_path / "pnn.h5", progress=False)
    run = result["runs"][0]
    assert run["bench_accuracy"] > 0.6  # chance: 0.25
    assert run["bench_queries"] == 60  # the test set
    with pytest.raises(ConfigError, match="not a bundled dataset"):
        load_pnn_config({**cfg, "dataset": "mnist"})


@pytest.mark.parametrize("options, path, message", [
    ({"path": "d.npz", "limit": 1}, "limit", "must be >= 2, got 1"),
    ({"path": "d.npz", "limit": 2.5}, "limit", "got 2.5"),
    ({"path": ""}, "path", "give the .npz or HDF5 file"),
    ({"path": "d.npz", "images_key": ""}, "images_key", "give the name of the images array"),
    ({"path": "d.npz", "limt": 5}, "limt", "unknown key; allowed keys: images_key, labels_key, limit, path"),
])
def test_dataset_options_are_checked_naming_the_path(options, path, message):
    with pytest.raises(ConfigError) as info:
        parse_dataset(options)
    assert str(info.value).startswith(f"dataset.{path}: ") and message in str(info.value), str(info.value)
    assert parse_dataset({"path": "d.npz", "limit": 2}).limit == 2
