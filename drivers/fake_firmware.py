"""A fake microcontroller board on a pseudo-terminal, for tests and dry runs of :mod:`.serial_board`.

``python -m hil.drivers.fake_firmware --link /tmp/board`` opens a pty, points
the symlink ``--link`` at its device (as ``/dev/serial/by-id/...`` links do),
prints ``READY <link>`` and speaks the line protocol documented in
:mod:`hil.drivers.serial_board`. Behind its DACs sits a small nonlinear
analog network: ``adc = clip(1.65 + 1.5 tanh(W (dac - 1.65) + b), 0, 3.3)``
with ``W`` (``n_adc x n_dac``) and ``b`` drawn from ``--seed``, plus Gaussian
noise (``--noise-v``) and 12-bit ADC quantisation.

Fault injection (for the driver's tests): ``--drop-every K`` (no reply to
every K-th measurement), ``--garble-every K`` (a truncated, corrupted reply),
``--busy-every K`` (``ERR 4 busy``), ``--disconnect-at K`` (the pty vanishes
at the K-th measurement and a new one appears under the same link after
``--down-s``), ``--die-at K`` (the process exits at the K-th measurement).
``--record FILE`` appends every voltage vector applied to the DACs, so tests
can check what reached the device.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import tty

import numpy as np

IDN = "HIL,FAKEBOARD,0001,1.0"
ADC_BITS = 12


class Board:
    def __init__(self, n_dac: int, n_adc: int, vmin: float, vmax: float, seed: int, noise_v: float) -> None:
        rng = np.random.default_rng(seed)
        self.n_dac, self.n_adc, self.vmin, self.vmax = n_dac, n_adc, vmin, vmax
        self.w = rng.normal(0, 1.2 / np.sqrt(n_dac), (n_adc, n_dac))
        self.b = rng.normal(0, 0.3, n_adc)
        self.noise_v = noise_v
        self.rng = np.random.default_rng(seed + 1)

    def respond(self, dac_v: np.ndarray) -> np.ndarray:
        v = physical_response(dac_v, self.w, self.b)
        if self.noise_v > 0:
            v = v + self.rng.normal(0, self.noise_v, v.shape)
        lsb = 3.3 / (2**ADC_BITS - 1)
        return np.clip(np.round(v / lsb) * lsb, 0.0, 3.3)


def physical_response(dac_v: np.ndarray, w: np.ndarray, b: np.ndarray) -> np.ndarray:
    """The analog network's noise-free output (volts) for DAC voltages ``dac_v`` (``n_dac``)."""
    return np.clip(1.65 + 1.5 * np.tanh(w @ (dac_v - 1.65) + b), 0.0, 3.3)


class Firmware:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.board = Board(args.n_dac, args.n_adc, args.vmin, args.vmax, args.seed, args.noise_v)
        self.measurements = 0
        self.record = open(args.record, "a", buffering=1) if args.record else None  # noqa: SIM115

    def open_pty(self) -> int:
        master, slave = os.openpty()
        tty.setraw(slave)
        name = os.ttyname(slave)
        os.close(slave)  # the driver opens it by name; the master keeps the pty alive
        tmp = self.args.link + ".tmp"
        if os.path.lexists(tmp):
            os.unlink(tmp)
        os.symlink(name, tmp)
        os.replace(tmp, self.args.link)
        return master

    def reply_to(self, line: str) -> str | None:
        a, board = self.args, self.board
        if line == "*IDN?":
            return IDN
        if line == "CFG?":
            return f"DAC {board.n_dac} {board.vmin:.3f} {board.vmax:.3f};ADC {board.n_adc} 0.000 3.300"
        if not line.startswith("Q "):
            return f"ERR 1 unknown command {line[:20]!r}"
        try:
            v = np.array([float(t) for t in line[2:].split(",")])
        except ValueError:
            return "ERR 2 bad number"
        if len(v) != board.n_dac:
            return f"ERR 2 expected {board.n_dac} values, got {len(v)}"
        if (v < board.vmin - 1e-9).any() or (v > board.vmax + 1e-9).any():
            return f"ERR 3 out of range [{board.vmin}, {board.vmax}]"
        self.measurements += 1
        k = self.measurements
        if a.die_at and k == a.die_at:
            os._exit(3)
        if self.record is not None:
            self.record.write(",".join(f"{x:.6f}" for x in v) + "\n")
        if a.busy_every and k % a.busy_every == 0:
            return "ERR 4 busy"
        adc = board.respond(v)
        if a.drop_every and k % a.drop_every == 0:
            return None
        text = "A " + ",".join(f"{x:.4f}" for x in adc)
        if a.garble_every and k % a.garble_every == 0:
            return text[: len(text) // 2] + "#?"
        return text

    def serve(self) -> None:
        master = self.open_pty()
        print(f"READY {self.args.link}", flush=True)
        buf = b""
        while True:
            try:
                chunk = os.read(master, 4096)
            except OSError:  # nobody has the port open right now: wait for the driver
                time.sleep(0.002)
                continue
            if not chunk:
                time.sleep(0.002)
                continue
            buf += chunk
            while b"\n" in buf:
                raw, buf = buf.split(b"\n", 1)
                line = raw.decode(errors="replace").strip()
                if not line:
                    continue
                if (self.args.disconnect_at and line.startswith("Q ")
                        and self.measurements + 1 == self.args.disconnect_at):
                    self.measurements += 1
                    os.close(master)  # unplugged: the driver's port errors out
                    time.sleep(self.args.down_s)
                    master = self.open_pty()  # plugged back in, under the same link
                    buf = b""
                    break
                reply = self.reply_to(line)
                if reply is not None:
                    os.write(master, (reply + "\n").encode())


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--link", required=True, help="symlink to create for the pty device")
    p.add_argument("--n-dac", type=int, default=4)
    p.add_argument("--n-adc", type=int, default=3)
    p.add_argument("--vmin", type=float, default=0.0)
    p.add_argument("--vmax", type=float, default=3.3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--noise-v", type=float, default=0.002)
    for name in ("drop-every", "garble-every", "busy-every", "disconnect-at", "die-at"):
        p.add_argument(f"--{name}", type=int, default=0)
    p.add_argument("--down-s", type=float, default=0.2)
    p.add_argument("--record", help="append every applied DAC vector to this file")
    args = p.parse_args(argv)
    try:
        Firmware(args).serve()
    except KeyboardInterrupt:
        sys.exit(0)


if __name__ == "__main__":
    main()
