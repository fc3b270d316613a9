"""Dry runs: the exact bench config, with every rig swapped for its simulated counterpart.

A rig type registers a simulated counterpart in :data:`hil.registry.SIMULATORS` (the fake firmware on a pty,
the loopback SCPI server, slmsuite's simulated SLM and camera: :mod:`hil.drivers.dry_run`). :func:`dry_run`
starts each one the config's rig sections (``blackbox:`` of a run, ``bench:`` of a PNN experiment) need, yields
the config with those sections rewritten to reach them, and stops them all on the way out, whatever happens.
Twins are simulations already and run as they are.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from hil.registry import SIMULATORS

RIG_SECTIONS = ("blackbox", "bench")


@contextlib.contextmanager
def dry_run(data: Mapping[str, Any], say: Callable[[str], None] = print) -> Iterator[dict[str, Any]]:
    """``data`` (a run or PNN config) with each rig section on its simulated counterpart, for the ``with`` body."""
    out = dict(data)
    with contextlib.ExitStack() as stack:
        swapped = []
        for key in RIG_SECTIONS:
            section = data.get(key)
            kind = section.get("type") if isinstance(section, Mapping) else None
            if isinstance(kind, str) and kind in SIMULATORS.names():
                out[key] = stack.enter_context(SIMULATORS.get(kind)(dict(section)))
                swapped.append(f"{key} ({kind})")
        if swapped:
            say(f"dry run: {', '.join(swapped)} on the simulated counterpart, started and stopped by hil")
        else:
            say("dry run: no rig in this config (a twin is a simulation already): it runs as it is")
        yield out
