"""A loopback SCPI instrument on 127.0.0.1: an AWG/DAC driving a small analog network, read by a scope/DMM.

:class:`LoopbackInstrument` serves raw SCPI over TCP (a VISA ``::SOCKET``
resource) from a background thread; port 0 picks a free port. Behind its
outputs is the seeded nonlinear network of :mod:`.fake_firmware` (4 inputs,
3 outputs, 1 mV noise). ``python -m hil.drivers.scpi_loopback`` runs one in the
foreground for dry runs (``configs/visa_rig.yaml``).

Commands (``\\n``-terminated): ``*IDN?``, ``*RST``, ``SOUR:VOLT:LIST v1,...,vn``,
``SOUR<ch>:VOLT v``, ``MEAS:VOLT:LIST?``, ``MEAS<ch>:VOLT?``,
``SOUR:VOLT:LIM?`` (``vmin,vmax``), ``SYST:ERR?`` (``0,"No error"``,
``-222,"Data out of range"``, ``-113,"Undefined header"``, ...). Fault
injection for the driver's tests: ``drop_every`` (no reply to every K-th
measurement), ``garble_every``, ``disconnect_every`` (the connection is
closed instead of answering). ``applied`` keeps every input vector set.
"""

from __future__ import annotations

import argparse
import socket
import socketserver
import threading
from collections import deque

import numpy as np
from hil.drivers.fake_firmware import Board

IDN = "HIL,LOOPBACK-AWG-SCOPE,0002,1.0"


class LoopbackInstrument:
    def __init__(self, *, port: int = 0, n_in: int = 4, n_out: int = 3, vmin: float = 0.0, vmax: float = 3.3,
                 seed: int = 0, noise_v: float = 0.001, drop_every: int = 0, garble_every: int = 0,
                 disconnect_every: int = 0) -> None:
        self.board = Board(n_in, n_out, vmin, vmax, seed, noise_v)
        self.volts = np.full(n_in, (vmin + vmax) / 2)
        self.errors: deque[str] = deque()
        self.applied: list[list[float]] = []
        self.measurements = 0
        self.connections: list[socket.socket] = []
        self.faults = {"drop": drop_every, "garble": garble_every, "disconnect": disconnect_every}
        self.lock = threading.Lock()
        instrument = self

        class Handler(socketserver.StreamRequestHandler):
            def setup(self) -> None:
                super().setup()
                self.request.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                instrument.connections.append(self.request)

            def handle(self) -> None:
                for raw in self.rfile:
                    line = raw.decode(errors="replace").strip()
                    if not line:
                        continue
                    with instrument.lock:
                        reply = instrument.handle(line)
                    if reply == "<disconnect>":
                        return
                    if reply is not None:
                        self.wfile.write((reply + "\n").encode())
                        self.wfile.flush()

        class Server(socketserver.ThreadingTCPServer):
            allow_reuse_address = True
            daemon_threads = True

        self.server = Server(("127.0.0.1", port), Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def resource(self) -> str:
        return f"TCPIP::127.0.0.1::{self.port}::SOCKET"

    def start(self) -> LoopbackInstrument:
        self.thread.start()
        return self

    def stop(self) -> None:
        """Switch the instrument off: stop listening and drop every open connection."""
        self.server.shutdown()
        self.server.server_close()
        for conn in self.connections:
            try:
                conn.shutdown(socket.SHUT_RDWR)
                conn.close()
            except OSError:
                pass

    def __enter__(self) -> LoopbackInstrument:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- SCPI ----------------------------------------------------------------------------------------------------
    def _set(self, values: list[float], channels: list[int]) -> None:
        b = self.board
        if any(v < b.vmin - 1e-9 or v > b.vmax + 1e-9 for v in values):
            self.errors.append('-222,"Data out of range"')
            return
        for ch, v in zip(channels, values, strict=True):
            self.volts[ch] = v
        self.applied.append(self.volts.tolist())

    def _measure(self) -> str | None:
        self.measurements += 1
        k, f = self.measurements, self.faults
        if f["disconnect"] and k % f["disconnect"] == 0:
            return "<disconnect>"
        out = self.board.respond(self.volts)
        if f["drop"] and k % f["drop"] == 0:
            return None
        text = ",".join(f"{v:.5f}" for v in out)
        if f["garble"] and k % f["garble"] == 0:
            return text[: len(text) // 2] + "\x15?"
        return text

    def handle(self, line: str) -> str | None:
        head, _, arg = line.partition(" ")
        cmd = head.upper()
        b = self.board
        try:
            if cmd == "*IDN?":
                return IDN
            if cmd == "*RST":
                self.volts[:] = (b.vmin + b.vmax) / 2
                self.errors.clear()
                return None
            if cmd == "SYST:ERR?":
                return self.errors.popleft() if self.errors else '0,"No error"'
            if cmd == "SOUR:VOLT:LIM?":
                return f"{b.vmin:.4f},{b.vmax:.4f}"
            if cmd == "SOUR:VOLT:LIST":
                values = [float(t) for t in arg.split(",")]
                if len(values) != b.n_dac:
                    self.errors.append(f'-109,"Missing parameter: {b.n_dac} values expected"')
                    return None
                self._set(values, list(range(b.n_dac)))
                return None
            if cmd.startswith("SOUR") and cmd.endswith(":VOLT"):
                self._set([float(arg)], [int(cmd[4:-5]) - 1])
                return None
            if cmd == "MEAS:VOLT:LIST?":
                return self._measure()
            if cmd.startswith("MEAS") and cmd.endswith(":VOLT?"):
                text = self._measure()
                return text if text in (None, "<disconnect>") else text.split(",")[int(cmd[4:-6]) - 1]
        except (ValueError, IndexError):
            self.errors.append('-224,"Illegal parameter value"')
            return None
        self.errors.append('-113,"Undefined header"')
        return None


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description="Serve a loopback SCPI instrument on 127.0.0.1.")
    p.add_argument("--port", type=int, default=5025)
    args = p.parse_args(argv)
    inst = LoopbackInstrument(port=args.port)
    print(f"READY {inst.resource}", flush=True)
    try:
        inst.server.serve_forever()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
