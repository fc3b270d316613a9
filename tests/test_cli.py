"""The ``hil`` command line end to end: run, validate, log info, kill -9 and --resume."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import h5py
import numpy as np
import pytest
import yaml
from conftest import small_run_config

from hil.blackbox import BlackBox
from hil.cli import main
from hil.errors import LogError
from hil.querylog import read_log
from hil.run import execute, load_run_config

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
# one intra-op thread: on a busy 2-core machine two threads make each tiny surrogate fit ~100x slower
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "MPLBACKEND": "Agg"}


def _write(path: Path, data: dict) -> Path:
    path.write_text(yaml.safe_dump(data))
    return path


def _hil(*args: str, cwd: Path, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "hil.cli", *args], capture_output=True, text=True, cwd=cwd,
                          env=ENV, timeout=timeout)


def _step_pairs(data) -> np.ndarray:
    steps = data.mask("step")
    return np.stack([data.iteration[steps], data.start[steps]], axis=1)


# -- hil run ------------------------------------------------------------------------------

P, M, T = 3, 1, 6  # the shared run: starts, local samples per start, iterations


@pytest.fixture(scope="module")
def cli_run(tmp_path_factory):
    """One ``hil run CONFIG`` in a subprocess, shared by the tests that only read its results."""
    tmp = tmp_path_factory.mktemp("cli_run")
    cfg = _write(tmp / "small.yaml", small_run_config(tmp / "runs", local_samples=M, iterations=T))
    proc = _hil("run", str(cfg), "--no-progress", cwd=tmp)
    return tmp, cfg, proc


def _log_of(cli_run) -> Path:
    tmp, _, proc = cli_run
    logs = sorted((tmp / "runs").glob("*.h5"))
    assert len(logs) == 1, (logs, proc.stderr)
    return logs[0]


def test_run_writes_log_and_report(cli_run):
    tmp, _, proc = cli_run
    assert proc.returncode == 0, proc.stderr
    log = _log_of(cli_run)
    assert log.name.startswith("small-")
    assert f"log:     {log}" in proc.stdout
    assert "iterations done" in proc.stdout

    data = read_log(log)
    assert len(data) == P * (1 + M) * T
    assert set(data.purpose_labels()) == {"step", "local_sample"}
    assert int(data.mask("step").sum()) == P * T and int(data.mask("local_sample").sum()) == P * M * T
    assert sorted(map(tuple, _step_pairs(data).tolist())) == [(t, s) for t in range(T) for s in range(P)]
    assert data.attrs["config"]["name"] == "small" and len(data.run_ids) == 1
    assert f"queries: {len(data)} this session" in proc.stdout

    png = log.with_suffix(".png")
    assert png.is_file() and f"report:  {png}" in proc.stdout
    assert png.read_bytes()[:8] == PNG_MAGIC
    from PIL import Image

    with Image.open(png) as img:
        img.verify()
    with Image.open(png) as img:
        w, h = img.size
        assert img.format == "PNG" and w > 100 and h > 100
    import matplotlib.image

    pixels = matplotlib.image.imread(png)
    assert pixels.shape[:2] == (h, w) and float(pixels.std()) > 0  # not a blank image


def test_log_info(cli_run, capsys):
    log = _log_of(cli_run)
    assert main(["log", "info", str(log)]) == 0
    out = capsys.readouterr().out
    assert re.search(rf"^rows:\s+{P * (1 + M) * T}$", out, re.M), out
    assert re.search(rf"^by purpose:\s+step {P * T}, local_sample {P * M * T}$", out, re.M), out
    assert re.search(r"^config:\s+small$", out, re.M), out
    assert re.search(rf"^iterations:\s+0 \.\. {T - 1}$", out, re.M), out


def test_log_info_of_a_missing_log(tmp_path, capsys):
    assert main(["log", "info", str(tmp_path / "nope.h5")]) == 2
    assert "does not exist" in capsys.readouterr().err


# -- bad configs -----------------------------------------------------------------------------


def _bad_configs(tmp_path):
    unknown_key = small_run_config(tmp_path / "runs")
    unknown_key["optimizer"]["itrations"] = 5
    unknown_type = small_run_config(tmp_path / "runs")
    unknown_type["blackbox"]["type"] = "cnon"
    return [
        (unknown_key, ["optimizer.itrations: unknown key", "allowed keys:", "iterations", "local_samples"]),
        (unknown_type, ["blackbox.type: unknown blackbox type 'cnon'", "allowed: cnon_twin"]),
    ]


@pytest.mark.parametrize("which", [0, 1], ids=["unknown_key", "unknown_type"])
def test_run_bad_config_exits_2_and_writes_nothing(tmp_path, capsys, which):
    data, expected = _bad_configs(tmp_path)[which]
    cfg = _write(tmp_path / "bad.yaml", data)
    assert main(["run", str(cfg), "--no-progress", "--log", str(tmp_path / "x.h5")]) == 2
    captured = capsys.readouterr()
    assert captured.err.startswith("hil: error: ")
    for text in expected:
        assert text in captured.err
    assert captured.out == ""
    assert not (tmp_path / "x.h5").exists() and not (tmp_path / "runs").exists()
    assert not list(tmp_path.rglob("*.h5")) and not list(tmp_path.rglob("*.png"))


def test_run_bad_config_subprocess_exit_code(tmp_path):
    data, expected = _bad_configs(tmp_path)[1]
    proc = _hil("run", str(_write(tmp_path / "bad.yaml", data)), "--no-progress", cwd=tmp_path)
    assert proc.returncode == 2
    assert all(text in proc.stderr for text in expected), proc.stderr
    assert "Traceback" not in proc.stderr
    assert not list(tmp_path.rglob("*.h5"))


def test_run_refuses_to_overwrite_a_log(cli_run, tmp_path, capsys):
    _, cfg, _ = cli_run
    log = _log_of(cli_run)
    before = log.read_bytes()
    assert main(["run", str(cfg), "--no-progress", "--log", str(log)]) == 2
    assert "already exists" in capsys.readouterr().err
    assert log.read_bytes() == before


def test_run_that_stops_before_its_first_iteration(tmp_path, capsys):
    cfg = _write(tmp_path / "tiny.yaml", small_run_config(tmp_path / "runs", max_queries=2))  # < 3 per iteration
    log = tmp_path / "empty.h5"
    assert main(["run", str(cfg), "--no-progress", "--log", str(log)]) == 0
    out = capsys.readouterr().out
    assert "(query budget 2 reached)" in out and "no iteration ran" in out and f"log:     {log}" in out
    assert len(read_log(log)) == 0
    assert not log.with_suffix(".png").exists() and "report:" not in out


# -- hil validate ---------------------------------------------------------------------------


def test_validate_ok(tmp_path, capsys):
    cfg = _write(tmp_path / "ok.yaml", small_run_config(tmp_path / "runs"))
    assert main(["validate", str(cfg)]) == 0
    assert capsys.readouterr().out.strip() == f"{cfg}: valid (cnon_twin, optimizer gradient, estimator surrogate)"
    assert not (tmp_path / "runs").exists()  # validating runs nothing


def test_validate_error(tmp_path, capsys):
    data = small_run_config(tmp_path / "runs")
    data["estimator"]["loss"] = "huber"
    cfg = _write(tmp_path / "bad.yaml", data)
    assert main(["validate", str(cfg)]) == 2
    err = capsys.readouterr().err
    assert "estimator.loss: 'huber' is not allowed; allowed values: 'mse', 'mae', 'gradpie'" in err
    assert main(["validate", str(tmp_path / "missing.yaml")]) == 2
    assert "does not exist" in capsys.readouterr().err


# -- kill -9 and --resume -----------------------------------------------------------------------


def test_sigkill_then_resume(tmp_path):
    p, m, iterations = 3, 1, 150  # ~3 s of loop on one thread: plenty of time to kill it part-way
    per_iteration = p * (1 + m)
    cfg = _write(tmp_path / "long.yaml", small_run_config(tmp_path / "runs", local_samples=m, iterations=iterations))
    log = tmp_path / "killed.h5"
    proc = subprocess.Popen([sys.executable, "-m", "hil.cli", "run", str(cfg), "--log", str(log), "--no-progress"],
                            cwd=tmp_path, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    seen = None
    try:
        deadline = time.monotonic() + 90
        while seen is None and time.monotonic() < deadline:
            if proc.poll() is not None:
                pytest.fail(f"the run ended (exit {proc.returncode}) before it could be killed: {proc.stderr.read()}")
            if log.exists():
                try:
                    data = read_log(log)  # a live log: read without the writer's lock
                except (LogError, OSError):  # caught mid-creation or mid-flush: retry
                    data = None
                if data is not None and len(data) > 4 * per_iteration:
                    seen = data
            time.sleep(0.01)
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
        proc.stderr.close()
    assert seen is not None, "the log never grew past 4 iterations"
    assert proc.returncode == -signal.SIGKILL
    assert len(seen) < iterations * per_iteration  # really killed part-way

    with h5py.File(log, "r") as f:  # a plain open of the killed file must work
        assert f.attrs["format"] == "hil.querylog" and f["x"].shape[0] >= len(seen)
    after = read_log(log)
    n_seen, n_after = len(seen), len(after)
    assert n_after >= n_seen
    for col in ("x", "y", "iteration", "purpose", "start", "run", "t_start"):
        np.testing.assert_array_equal(getattr(after, col)[:n_seen], getattr(seen, col), err_msg=col)

    proc2 = _hil("run", str(cfg), "--resume", str(log), "--no-progress", cwd=tmp_path)
    assert proc2.returncode == 0, proc2.stderr
    assert f"log:     {log}" in proc2.stdout

    final = read_log(log)
    assert len(final.run_ids) == 2 and final.run_ids[0] == seen.run_ids[0]
    assert len(final) == iterations * per_iteration
    for col in ("x", "y", "iteration", "purpose", "start", "t_start"):  # append-only: nothing rewritten
        np.testing.assert_array_equal(getattr(final, col)[:n_after], getattr(after, col), err_msg=col)
    assert (final.run[:n_after] == 0).all() and (final.run[n_after:] == 1).all()
    assert set(final.purpose_labels()) == {"step", "local_sample"}

    pairs, counts = np.unique(_step_pairs(final), axis=0, return_counts=True)
    assert (counts == 1).all(), f"duplicated step rows: {pairs[counts > 1].tolist()}"
    assert sorted(map(tuple, pairs.tolist())) == [(t, s) for t in range(iterations) for s in range(p)]
    local = final.mask("local_sample")
    lp, lc = np.unique(np.stack([final.iteration[local], final.start[local]], axis=1), axis=0, return_counts=True)
    assert len(lp) == iterations * p and (lc == m).all()
    assert sorted(np.unique(final.iteration).tolist()) == list(range(iterations))
    assert (np.diff(final.iteration) >= 0).all()  # the resumed run went on where the killed one stopped


def test_resume_after_a_crash_between_a_step_and_its_local_samples(tmp_path, monkeypatch):
    """A kill after iteration k's step batch but before its local samples must not lose those samples."""
    p, m, iterations, crash_at = 3, 2, 6, 3
    config = load_run_config(small_run_config(tmp_path / "runs", local_samples=m, iterations=iterations))
    log = tmp_path / "crashed.h5"
    query = BlackBox.query

    def crashing_query(self, x, *, purpose="step", iteration=-1, start=None):
        if purpose == "local_sample" and iteration == crash_at:
            raise KeyboardInterrupt  # stands in for kill -9: the step batch of crash_at is in the log
        return query(self, x, purpose=purpose, iteration=iteration, start=start)

    monkeypatch.setattr(BlackBox, "query", crashing_query)
    with pytest.raises(KeyboardInterrupt):
        execute(config, log_path=log)
    monkeypatch.setattr(BlackBox, "query", query)
    killed = read_log(log)
    assert len(killed) == crash_at * p * (1 + m) + p

    result = execute(config, resume=log)
    final = read_log(log)
    assert len(final) == iterations * p * (1 + m)
    local = final.mask("local_sample")
    for t in range(iterations):
        assert int((local & (final.iteration == t)).sum()) == p * m, f"iteration {t}"
    pairs, counts = np.unique(_step_pairs(final), axis=0, return_counts=True)
    assert len(pairs) == iterations * p and (counts == 1).all()
    assert result.trace.iterations == iterations
    assert result.trace.queries[-1] == len(final)


def test_resume_with_a_different_config_fails(cli_run, tmp_path, capsys):
    log = _log_of(cli_run)
    before = read_log(log)
    data = small_run_config(cli_run[0] / "runs", local_samples=M, iterations=T)
    data["optimizer"]["lr"] = 0.05
    other = _write(tmp_path / "other.yaml", data)
    assert main(["run", str(other), "--resume", str(log), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("hil: error: ") and "written by a different config" in err and str(log) in err
    after = read_log(log)
    assert len(after) == len(before) and after.run_ids == before.run_ids  # the log is untouched


@pytest.mark.parametrize("optimizer", [{"type": "random", "per_start": 2}, {"type": "cmaes"}])
def test_run_a_gradient_free_optimizer_without_an_estimator(tmp_path, capsys, optimizer):
    if optimizer["type"] == "cmaes":
        pytest.importorskip("cma")
    data = small_run_config(tmp_path / "runs", **optimizer, max_queries=60, iterations=1000)
    del data["estimator"], data["optimizer"]["n_starts"]
    cfg = _write(tmp_path / "peer.yaml", data)
    log = tmp_path / "peer.h5"
    assert main(["run", str(cfg), "--no-progress", "--log", str(log)]) == 0
    out = capsys.readouterr().out
    assert f"({'query budget 60 reached' if optimizer['type'] == 'random' else ''}" in out
    assert read_log(log).attrs["config"]["optimizer"]["type"] == optimizer["type"]
    assert len(read_log(log)) <= 60 and (tmp_path / "peer.png").is_file()
    assert "estimator" not in read_log(log).attrs["config"]


def test_validate_checks_a_pnn_config_too(capsys):
    root = Path(__file__).resolve().parents[1]
    assert main(["validate", str(root / "configs" / "pnn_digits.yaml")]) == 0
    assert "valid (physical-neural-network experiment pnn_digits" in capsys.readouterr().out
