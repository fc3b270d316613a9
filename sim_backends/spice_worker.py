"""One simulator process: ``python -m hil.sim_backends.spice_worker`` (started by :mod:`.spice_pool`).

It owns one libngspice, parses the netlist once, then answers one design at a
time: ``alterparam`` each parameter, ``reset``, run the analysis, measure.
The protocol is one JSON object per line on a private pipe (the process's
original stdout; fd 1 is pointed at stderr so that nothing the C library
prints can corrupt it):

* parent → worker: ``{"netlist": str, "analysis": str, "output": str, "reload": bool}`` once, then
  ``{"id": int, "params": {name: value}}`` per design, or ``{"quit": true}``;
* worker → parent: ``{"ready": true}`` or ``{"ready": false, "error": str}``, then
  ``{"id": int, "row": [valid, gain_db, ugbw_hz, phase_margin_deg, fom], "reason": str}``.

Imports only numpy, ctypes and our binding (no torch): a replacement process
starts in a fraction of a second.
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any, TextIO

from hil.sim_backends.ngspice import NgSpice
from hil.sim_backends.opamp_measure import OpAmpFigures, invalid, measure


class Simulator:
    """The netlist loaded once in this process's libngspice; :meth:`simulate` runs one design."""

    def __init__(self, netlist: str, analysis: str, output: str, reload: bool = False) -> None:
        self.sim = NgSpice()
        self.netlist, self.reload = netlist, reload
        self.sim.load_circuit(netlist)
        self.analysis, self.output = analysis, output

    def simulate(self, params: dict[str, float]) -> OpAmpFigures:
        sim = self.sim
        start = len(sim.output)
        try:
            if self.reload:  # the slow way, for the benchmark's comparison: parse the whole deck again
                sim.command("remcirc")
                sim.load_circuit(with_params(self.netlist, params))
            else:
                for name, value in params.items():
                    sim.command(f"alterparam {name}={value:.9g}")
                sim.command("reset")
            sim.command(self.analysis)
            errors = sim.errors(start)
            if errors:
                return invalid(f"simulation failed: {errors[-1].strip()}")
            figures = measure(sim.vector("frequency").real, sim.vector(self.output))
        except Exception as exc:  # a failed design, never a dead worker
            figures = invalid(f"simulation failed: {exc}")
        finally:
            try:
                sim.command("destroy all")  # free the plot's vectors
            except Exception:
                pass
            if len(sim.output) > 10_000:
                sim.clear_output()
        return figures


def with_params(netlist: str, params: dict[str, float]) -> str:
    """The deck with each ``name=value`` of its ``.param`` lines replaced by ``params[name]``."""
    lines = []
    for line in netlist.splitlines():
        if line.lower().startswith(".param"):
            parts = []
            for token in line.split()[1:]:
                name, _, value = token.partition("=")
                parts.append(f"{name}={params[name]:.9g}" if name in params else token)
            line = ".param " + " ".join(parts)
        lines.append(line)
    return "\n".join(lines)


def serve(inp: TextIO, out: TextIO) -> None:
    def send(obj: dict[str, Any]) -> None:
        out.write(json.dumps(obj) + "\n")
        out.flush()

    setup = json.loads(inp.readline())
    try:
        simulator = Simulator(setup["netlist"], setup["analysis"], setup["output"], bool(setup.get("reload")))
    except Exception as exc:
        send({"ready": False, "error": str(exc)})
        return
    send({"ready": True})
    for line in inp:
        msg = json.loads(line)
        if msg.get("quit"):
            return
        figures = simulator.simulate(msg["params"])
        send({"id": msg["id"], "row": figures.as_row(), "reason": figures.reason})


def main() -> None:
    protocol = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)  # anything printed at fd 1 (the C library) goes to stderr, not into the protocol
    sys.stdout = sys.stderr
    serve(sys.stdin, protocol)


if __name__ == "__main__":
    main()
