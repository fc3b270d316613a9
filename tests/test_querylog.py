"""Tests of hil.querylog: round trip, validation, kill -9 crash safety, resume, benchmark."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

from hil.blackbox import PURPOSES, BlackBox, BlackBoxSpec
from hil.errors import LogError
from hil.querylog import SCHEMA_VERSION, LogData, QueryLog, benchmark_append, read_log, summarize

REPO = Path(__file__).resolve().parents[1]


def _new(path: Path, **kw) -> QueryLog:
    args = dict(input_dim=3, output_shape=(2, 2), output_dtype="float32", run_id="run-a")
    args.update(kw)
    return QueryLog.create(path, **args)


def _batch(n0: int, b: int, d: int = 3, out: tuple[int, ...] = (2, 2)) -> tuple[np.ndarray, np.ndarray]:
    idx = np.arange(n0, n0 + b)
    x = np.repeat(idx[:, None].astype(np.float32), d, axis=1) + np.arange(d, dtype=np.float32) / 10
    y = (idx.reshape(-1, *([1] * len(out))) * np.ones(out)).astype(np.float32) * 2
    return x, y


# -- round trip ------------------------------------------------------------------------


def test_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "log.h5"
    config = {"name": "demo", "lr": 0.1, "layers": [3, 4]}
    batches = [(0, 4, "initial", 0, None), (4, 3, "step", 1, [0, 1, 2]), (7, 5, "probe", 2, [5] * 5)]
    with _new(path, config=config, attrs={"device": "twin", "gain": 1.5, "bounds": [0, 1]}) as log:
        assert log.n_rows == 0 and log.path == str(path)
        for n0, b, purpose, it, start in batches:
            x, y = _batch(n0, b)
            log.append(x, y, 100.0 + it, 100.5 + it, it, purpose, None if start is None else np.array(start))
        assert log.n_rows == 12
    assert log.closed

    data = read_log(path)
    assert isinstance(data, LogData) and len(data) == 12
    x_all = np.concatenate([_batch(n0, b)[0] for n0, b, *_ in batches])
    y_all = np.concatenate([_batch(n0, b)[1] for n0, b, *_ in batches])
    np.testing.assert_array_equal(data.x, x_all)
    np.testing.assert_array_equal(data.y, y_all)
    assert data.x.dtype == np.float32 and data.y.dtype == np.float32 and data.y.shape == (12, 2, 2)
    np.testing.assert_array_equal(data.iteration, [0] * 4 + [1] * 3 + [2] * 5)
    np.testing.assert_array_equal(data.t_start, [100.0] * 4 + [101.0] * 3 + [102.0] * 5)
    np.testing.assert_array_equal(data.t_end, [100.5] * 4 + [101.5] * 3 + [102.5] * 5)
    np.testing.assert_array_equal(data.start, [-1] * 4 + [0, 1, 2] + [5] * 5)
    np.testing.assert_array_equal(data.run, np.zeros(12))
    assert list(data.purpose_labels()) == ["initial"] * 4 + ["step"] * 3 + ["probe"] * 5
    assert data.mask("step").sum() == 3 and data.mask("calibration").sum() == 0
    with pytest.raises(LogError, match="unknown purpose"):
        data.mask("bogus")

    a = data.attrs
    assert a["schema_version"] == SCHEMA_VERSION
    assert a["config"] == config and a["run_ids"] == ["run-a"]
    assert set(a["versions"]) >= {"python", "hil", "torch", "numpy", "h5py"}
    assert a["device"] == "twin" and a["gain"] == 1.5 and a["bounds"] == [0, 1]
    assert "created" in a

    # raw layout: plain h5py sees the documented columns and attributes
    with h5py.File(path, "r") as f:
        assert (
            f["purpose"].dtype == np.uint8 and f["run"].dtype == np.uint16 and f["commit"].dtype == np.uint8
        )
        assert f["t_start"].dtype == np.float64 and f["iteration"].dtype == np.int32
        assert json.loads(f["purpose"].attrs["names"]) == list(PURPOSES)
        assert json.loads(f.attrs["config"]) == config
        assert (f["commit"][:] == 1).all()

    text = summarize(path)
    for needle in (
        "rows:          12",
        "run-a",
        "step 3",
        "probe 5",
        "initial 4",
        "demo",
        "input dim:     3",
        "(2, 2)",
        "float32",
        "iterations:    0 .. 2",
    ):
        assert needle in text, (needle, text)


def test_invalid_rows_are_kept_as_nan_and_counted(tmp_path: Path) -> None:
    path = tmp_path / "log.h5"
    with _new(path) as log:
        x, y = _batch(0, 4)
        y[1] = np.nan  # e.g. a design the simulator could not answer
        y[3, 0, 0] = np.inf
        log.append(x, y, 1.0, 2.0, 0, "step")
    data = read_log(path)
    assert np.isnan(data.y[1]).all() and np.isfinite(data.y[[0, 2]]).all()
    assert "non-finite y:  2 rows" in summarize(path)


def test_integer_output_dtype_and_blackbox_attach(tmp_path: Path) -> None:
    class Counter(BlackBox):
        def _query(self, x: torch.Tensor) -> torch.Tensor:
            return (x.sum(dim=1, keepdim=True) * 10).round().repeat(1, 4).reshape(-1, 2, 2)

    spec = BlackBoxSpec("counter", 3, torch.zeros(3), torch.ones(3) * 100, (2, 2), output_dtype=torch.float32)
    path = tmp_path / "bb.h5"
    with _new(path, output_dtype="uint16") as log, Counter(spec) as box:
        box.attach_log(log)
        box.query(
            torch.tensor([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]]), purpose="probe", iteration=7, start=[3, 4]
        )
        box.query(torch.tensor([[0.5, 0.5, 0.5]]), purpose="calibration")
    data = read_log(path)
    assert data.y.dtype == np.uint16
    np.testing.assert_array_equal(data.y[:, 0, 0], [60, 150, 15])
    np.testing.assert_array_equal(data.start, [3, 4, -1])
    np.testing.assert_array_equal(data.iteration, [7, 7, -1])
    assert (data.t_end >= data.t_start).all() and data.t_start[0] > 1e9


# -- validation --------------------------------------------------------------------------


def test_validation_errors(tmp_path: Path) -> None:
    path = tmp_path / "v.h5"
    log = _new(path)
    x, y = _batch(0, 2)
    with pytest.raises(LogError, match=r"x has shape \(2, 4\), expected \(batch, 3\)"):
        log.append(np.zeros((2, 4)), y, 0, 1, 0, "step")
    with pytest.raises(LogError, match=r"x has shape \(3,\)"):
        log.append(np.zeros(3), y, 0, 1, 0, "step")
    with pytest.raises(LogError, match=r"y has shape \(2, 4\), expected \(2, 2, 2\)"):
        log.append(x, np.zeros((2, 4)), 0, 1, 0, "step")
    with pytest.raises(LogError, match=r"unknown purpose 'train'.*step, local_sample"):
        log.append(x, y, 0, 1, 0, "train")
    with pytest.raises(LogError, match="start must be 2 integers"):
        log.append(x, y, 0, 1, 0, "step", start=np.array([1, 2, 3]))
    with pytest.raises(LogError, match="int32"):
        log.append(x, y, 0, 1, 2**40, "step")
    assert log.n_rows == 0
    log.append(x, y, 0, 1, 0, "step")
    log.close()
    with pytest.raises(LogError, match="closed"):
        log.append(x, y, 0, 1, 0, "step")
    assert len(read_log(path)) == 2

    with pytest.raises(LogError, match="already exists; refusing to overwrite"):
        _new(path)
    assert len(read_log(path)) == 2  # untouched

    ipath = tmp_path / "int.h5"
    with _new(ipath, output_dtype="uint16") as ilog:
        ilog.append(x, np.full((2, 2, 2), 7.0), 0, 1, 0, "step")  # integral floats are stored exactly
        with pytest.raises(LogError, match="uint16 cannot hold exactly"):
            ilog.append(x, np.full((2, 2, 2), 0.5), 0, 1, 0, "step")
        with pytest.raises(LogError, match="uint16 cannot hold exactly"):
            ilog.append(x, np.full((2, 2, 2), -1), 0, 1, 0, "step")
    with pytest.raises(LogError, match="reserved"):
        _new(tmp_path / "r.h5", attrs={"run_ids": 1})


def test_read_errors(tmp_path: Path) -> None:
    with pytest.raises(LogError, match="does not exist"):
        read_log(tmp_path / "missing.h5")
    text = tmp_path / "notes.txt"
    text.write_text("hello")
    with pytest.raises(LogError, match="not an HDF5 file"):
        read_log(text)
    other = tmp_path / "other.h5"
    with h5py.File(other, "w") as f:
        f["data"] = np.arange(3)
    with pytest.raises(LogError, match="not a hil query log"):
        read_log(other)
    with pytest.raises(LogError, match="not a hil query log"):
        QueryLog.open_append(other, run_id="r")
    newer = tmp_path / "newer.h5"
    _new(newer).close()
    with h5py.File(newer, "r+") as f:
        f.attrs["schema_version"] = SCHEMA_VERSION + 1
    with pytest.raises(LogError, match="newer than this hil understands"):
        read_log(newer)
    with pytest.raises(LogError, match="does not exist"):
        QueryLog.open_append(tmp_path / "missing.h5", run_id="r")


# -- recovery of the committed length ------------------------------------------------------


def test_uncommitted_rows_are_ignored_and_truncated(tmp_path: Path) -> None:
    path = tmp_path / "torn.h5"
    with _new(path) as log:
        for i in range(3):
            log.append(*_batch(2 * i, 2), 0.0, 1.0, i, "step")
    # simulate a kill in the middle of a batch: some columns longer, commit not set
    with h5py.File(path, "r+") as f:
        for c in ("x", "y", "t_start", "commit"):
            f[c].resize(9, axis=0)
        f["x"][6:9] = 99
        f["commit"][6:9] = 0
        f["commit"][8] = 1  # a stray 1 after a 0 does not count
    data = read_log(path)
    assert len(data) == 6 and (data.x[:, 0] == np.arange(6)).all()
    assert "rows:          6 (" in summarize(path)

    with QueryLog.open_append(path, run_id="run-b") as log:
        assert log.n_rows == 6 and log.run_index == 1
        log.append(*_batch(6, 3), 5.0, 6.0, 3, "probe")
    with h5py.File(path, "r") as f:
        assert {f[c].shape[0] for c in f} == {9}
    data = read_log(path)
    assert len(data) == 9 and (data.x[:, 0] == np.arange(9)).all()
    np.testing.assert_array_equal(data.run, [0] * 6 + [1] * 3)
    assert data.attrs["run_ids"] == ["run-a", "run-b"] and len(data.attrs["run_started"]) == 2


# -- kill -9 ---------------------------------------------------------------------------------

WRITER = r"""
import sys, time
import numpy as np
from hil.blackbox import PURPOSES
from hil.querylog import QueryLog
path, mode, run_id, seed = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
D, OUT = 6, (3, 4)
if mode == "create":
    log = QueryLog.create(path, input_dim=D, output_shape=OUT, output_dtype="uint16", run_id=run_id,
                          chunk_rows=8)
else:
    log = QueryLog.open_append(path, run_id=run_id)
print("ready", log.n_rows, flush=True)
rng = np.random.default_rng(seed)
while True:
    n = log.n_rows
    b = int(rng.integers(1, 14))
    idx = np.arange(n, n + b)
    x = np.repeat(idx[:, None].astype(np.float32), D, axis=1)
    y = np.broadcast_to((idx % 65536).astype(np.uint16)[:, None, None], (b, *OUT))
    log.append(x, y, float(n), float(n) + 0.5, n, PURPOSES[n % len(PURPOSES)], start=idx % 7)
    print(log.n_rows, flush=True)
"""

MAX_BATCH = 13


def _run_and_kill(path: Path, mode: str, run_id: str, delay: float, seed: int) -> tuple[int, int]:
    """Start a writer, let it append for ``delay`` s, SIGKILL it; return (rows at start, rows reported)."""
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    proc = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(path), mode, run_id, str(seed)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    lines: list[str] = []
    got_count = threading.Event()

    def reader() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.append(line.strip())
            if len(lines) >= 2:
                got_count.set()

    th = threading.Thread(target=reader, daemon=True)
    th.start()
    try:
        if not got_count.wait(60):
            proc.kill()
            raise AssertionError(
                f"writer never appended; stderr:\n{proc.stderr.read() if proc.stderr else ''}"
            )
        time.sleep(delay)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(30)
        th.join(10)
    assert proc.returncode == -signal.SIGKILL, proc.stderr.read() if proc.stderr else ""
    first = lines[0].split()
    assert first[0] == "ready"
    counts = [int(s) for s in lines[1:] if s.isdigit()]  # a torn last line is not a report
    return int(first[1]), max(counts)


def _check_rows(data: LogData, upto: int) -> None:
    idx = np.arange(upto)
    np.testing.assert_array_equal(data.x[:upto], np.repeat(idx[:, None].astype(np.float32), 6, axis=1))
    assert (data.y[:upto] == (idx % 65536).astype(np.uint16)[:, None, None]).all()
    np.testing.assert_array_equal(data.start[:upto], idx % 7)
    # t_start / iteration hold the first row index of each batch
    assert (data.t_start[:upto] <= idx).all() and (idx - data.t_start[:upto] < MAX_BATCH).all()
    np.testing.assert_array_equal(data.t_end[:upto], data.t_start[:upto] + 0.5)
    np.testing.assert_array_equal(data.iteration[:upto], data.t_start[:upto].astype(np.int32))
    np.testing.assert_array_equal(data.purpose[:upto], data.iteration[:upto] % len(PURPOSES))


@pytest.mark.parametrize("delay", [0.0, 0.13, 0.37])
def test_kill9_keeps_every_returned_batch(tmp_path: Path, delay: float) -> None:
    path = tmp_path / "killed.h5"
    _, reported = _run_and_kill(path, "create", "killed-run", delay, seed=int(delay * 100))
    with h5py.File(path, "r") as f:  # plain open, no repair tool
        assert "commit" in f
    data = read_log(path)
    assert reported <= len(data) <= reported + MAX_BATCH
    _check_rows(data, len(data))
    assert (data.run == 0).all() and data.attrs["run_ids"] == ["killed-run"]


def test_open_append_after_kill(tmp_path: Path) -> None:
    path = tmp_path / "resumed.h5"
    _, rep1 = _run_and_kill(path, "create", "r1", 0.1, seed=1)
    start2, rep2 = _run_and_kill(path, "append", "r2", 0.2, seed=2)  # resume after a kill, killed again
    assert rep1 <= start2 <= rep1 + MAX_BATCH and rep2 > start2
    with h5py.File(path, "r") as f:
        f["x"].shape  # noqa: B018 - must open and read without repair

    with QueryLog.open_append(path, run_id="r3") as log:
        n0 = log.n_rows
        assert rep2 <= n0 <= rep2 + MAX_BATCH and log.run_index == 2
        idx = np.arange(n0, n0 + 5)
        x = np.repeat(idx[:, None].astype(np.float32), 6, axis=1)
        y = np.broadcast_to(idx.astype(np.uint16)[:, None, None], (5, 3, 4))
        log.append(x, y, float(n0), n0 + 0.5, n0, PURPOSES[n0 % len(PURPOSES)], start=idx % 7)
        assert log.n_rows == n0 + 5

    data = read_log(path)
    assert len(data) == n0 + 5
    _check_rows(data, len(data))
    assert data.attrs["run_ids"] == ["r1", "r2", "r3"]
    expected_run = np.r_[np.zeros(start2), np.ones(n0 - start2), np.full(5, 2)]
    np.testing.assert_array_equal(data.run, expected_run)
    assert "r3 (5 rows)" in summarize(path)


# -- benchmark ---------------------------------------------------------------------------------


def test_benchmark_append_small(tmp_path: Path) -> None:
    path = tmp_path / "bench.h5"
    r = benchmark_append(path, rows=2000, batch=256, input_dim=100, output_shape=(8, 8))
    assert set(r) == {"rows", "batch", "seconds", "rows_per_s", "mb_per_s", "row_bytes"}
    assert r["rows"] == 2000 and r["batch"] == 256
    assert r["row_bytes"] == 100 * 4 + 64 * 2 + 28
    assert r["seconds"] > 0 and r["rows_per_s"] > 0
    assert r["mb_per_s"] == pytest.approx(r["rows_per_s"] * r["row_bytes"] / 1e6)
    data = read_log(path)
    assert len(data) == 2000 and data.y.dtype == np.uint16
    with pytest.raises(LogError, match="already exists"):
        benchmark_append(path, rows=10)


def test_live_log_is_readable_and_has_one_writer(tmp_path: Path) -> None:
    path = tmp_path / "live.h5"
    with _new(path) as log:
        log.append(*_batch(0, 3), 0.0, 1.0, 0, "step")
        assert len(read_log(path)) == 3  # readable while open for writing
        with pytest.raises(LogError, match="already has it open for writing"):
            QueryLog.open_append(path, run_id="second")
        log.append(*_batch(3, 2), 1.0, 2.0, 1, "step")
    data = read_log(path)
    assert len(data) == 5 and data.attrs["run_ids"] == ["run-a"]
    with QueryLog.open_append(path, run_id="run-b") as log2:  # fine once the first writer is closed
        assert log2.n_rows == 5
