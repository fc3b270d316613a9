"""Checkpoints beside the query log: a resume restores the run's state instead of recomputing it, and refuses a
checkpoint that is not this log's."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest
import torch

import hil.testing.problems  # noqa: F401  (registers the test problems)
from hil.errors import ConfigError
from hil.optim.checkpoint import checkpoint_path, load_checkpoint
from hil.querylog import read_log
from hil.run import execute, load_run_config
from hil.testing.optimizers import CASES, run_config, run_killed

needs_botorch = pytest.mark.skipif(importlib.util.find_spec("botorch") is None, reason="needs botorch (hil[peers])")
BOTORCH = next(c for c in CASES if c.name == "botorch")


def _config(tmp_path, every_s=0.0, **log):
    cfg = run_config(BOTORCH, log_dir=tmp_path)
    cfg["log"].update({"checkpoint_every_s": every_s, **log})
    return cfg


def _killed_run(tmp_path, cfg, after_batches=6):
    """``cfg`` run into ``killed.h5`` and killed at the problem's batch ``after_batches + 1``; the log's path."""
    killed = tmp_path / "killed.h5"
    run_killed(load_run_config(cfg), killed, after_batches)
    return killed


@needs_botorch
def test_a_resume_from_the_checkpoint_does_not_redo_the_gp_rounds_before_it(tmp_path, monkeypatch):
    from hil.optim.bayesopt import BayesOpt

    whole = execute(load_run_config(_config(tmp_path)), log_path=tmp_path / "whole.h5")
    killed = _killed_run(tmp_path, _config(tmp_path))
    state, why = load_checkpoint(checkpoint_path(killed), read_log(killed).run_ids[0], read_log(killed).x)
    assert state is not None, why
    proposals = []
    real = BayesOpt._propose
    monkeypatch.setattr(BayesOpt, "_propose", lambda self, q: proposals.append(q) or real(self, q))
    said = []
    resumed = execute(load_run_config(_config(tmp_path)), resume=killed, say=said.append)
    gp_rounds = sum(1 for q in np.diff([0, *whole.trace.queries]) if q > 0) - 1  # all rounds but the Sobol design
    done_before = state["optimizer"]["_round"] - 1
    assert done_before >= 3 and len(proposals) == gp_rounds - done_before, (len(proposals), gp_rounds, done_before)
    assert "restored the run's checkpoint after" in said[0]
    a, b = read_log(tmp_path / "whole.h5"), read_log(killed)
    np.testing.assert_allclose(b.x, a.x, rtol=1e-5, atol=1e-6)
    assert resumed.trace.best_overall == pytest.approx(whole.trace.best_overall)
    assert not checkpoint_path(killed).exists()


@needs_botorch
def test_a_checkpoint_of_another_run_or_of_rows_the_log_lacks_is_refused(tmp_path):
    killed = _killed_run(tmp_path, _config(tmp_path))
    log = read_log(killed)
    state, why = load_checkpoint(checkpoint_path(killed), "another-run", log.x)
    assert state is None and "another run" in why
    state, why = load_checkpoint(checkpoint_path(killed), log.run_ids[0], log.x[:2])
    assert state is None and "holds 2" in why
    shifted = log.x.copy()
    shifted[0] += 0.1
    state, why = load_checkpoint(checkpoint_path(killed), log.run_ids[0], shifted)
    assert state is None and "row 0" in why
    checkpoint_path(killed).write_bytes(b"not a checkpoint")
    state, why = load_checkpoint(checkpoint_path(killed), log.run_ids[0], log.x)
    assert state is None and "unreadable" in why
    # the resume then replays the whole log and still ends as an uninterrupted run
    said = []
    resumed = execute(load_run_config(_config(tmp_path)), resume=killed, say=said.append)
    assert "runs again from the start" in said[0] and resumed.queries == 30 - len(log)


@needs_botorch
def test_the_log_section_may_change_between_a_run_and_its_resume(tmp_path):
    killed = _killed_run(tmp_path, _config(tmp_path))
    said = []
    execute(load_run_config(_config(tmp_path, every_s=None, report=False)), resume=killed, say=said.append)
    assert len(read_log(killed)) == 30
    assert "restored" in said[0]  # the checkpoint saved by the first session still serves


def test_checkpoints_are_only_written_for_optimisers_that_hand_over_their_state(tmp_path):
    cfg = run_config(next(c for c in CASES if c.name == "random"), log_dir=tmp_path)
    cfg["log"]["checkpoint_every_s"] = 0
    killed = _killed_run(tmp_path, cfg)
    assert not checkpoint_path(killed).exists()


@pytest.mark.parametrize("value, says", [(-1, ">= 0"), ("often", "number")])
def test_a_bad_checkpoint_interval_names_the_key(tmp_path, value, says):
    cfg = run_config(CASES[0], log_dir=tmp_path)
    cfg["log"]["checkpoint_every_s"] = value
    with pytest.raises(ConfigError, match=r"log\.checkpoint_every_s") as err:
        load_run_config(cfg)
    assert says in str(err.value)


def test_a_checkpoint_is_replaced_whole(tmp_path):
    """Saving writes a temporary file and renames it over the old one: the old file is whole until then."""
    from hil.optim.checkpoint import Checkpointer

    class Log:
        n_rows = 3

        def row_x(self, i):
            return np.full(2, float(i), dtype=np.float32)

    ck = Checkpointer(tmp_path / "run.ckpt", 0.0, "run-1", Log())
    ck.save({"round": 1}, rows=2)
    ck.save({"round": 2}, rows=3)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run.ckpt"]
    state, why = load_checkpoint(tmp_path / "run.ckpt", "run-1", np.arange(3, dtype=np.float32)[:, None].repeat(2, 1))
    assert why == "" and state == {"round": 2}
    ck.save({"round": 3}, rows=4)  # rows the log does not hold: not saved
    assert torch.load(tmp_path / "run.ckpt", weights_only=False)["rows"] == 3
    ck.discard()
    assert not list(tmp_path.iterdir())
