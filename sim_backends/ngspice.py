"""A small ctypes binding of libngspice (Debian: ``apt-get install ngspice libngspice0``).

Why our own: PySpice raises on harmless stderr lines, and we need only five
calls. One :class:`NgSpice` per process: the shared library keeps global state
and is not thread-safe, so parallel simulation uses processes
(:mod:`hil.sim_backends.spice_pool`), each with ``OMP_NUM_THREADS=1``.

Usage::

    sim = NgSpice()                       # loads the library, registers the callbacks
    sim.load_circuit(netlist_text)        # parse once
    sim.command("alterparam w1=4u")       # change a .param ...
    sim.command("reset")                  # ... and re-evaluate the circuit (~4x faster than reloading)
    sim.command("ac dec 20 1 10g")
    f, v = sim.vector("frequency"), sim.vector("v(out)")

Everything ngspice prints is collected in :attr:`NgSpice.output`; lines that
start with ``Error`` or ``stderr Error`` are errors, the rest is chatter.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
from collections.abc import Iterable

import numpy as np

from hil.errors import DeviceError

INSTALL_HINT = "install NGspice's shared library: apt-get install ngspice libngspice0 (Debian/Ubuntu)"


class _Complex(ctypes.Structure):
    _fields_ = [("real", ctypes.c_double), ("imag", ctypes.c_double)]


class _VectorInfo(ctypes.Structure):
    _fields_ = [
        ("v_name", ctypes.c_char_p),
        ("v_type", ctypes.c_int),
        ("v_flags", ctypes.c_short),
        ("v_realdata", ctypes.POINTER(ctypes.c_double)),
        ("v_compdata", ctypes.POINTER(_Complex)),
        ("v_length", ctypes.c_int),
    ]


_SendChar = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_void_p)
_SendStat = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_void_p)
_ControlledExit = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_int, ctypes.c_bool, ctypes.c_bool, ctypes.c_int,
                                   ctypes.c_void_p)
_BGThreadRunning = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_bool, ctypes.c_int, ctypes.c_void_p)


def find_libngspice() -> str | None:
    """Path or soname of libngspice, or ``None``; ``HIL_LIBNGSPICE`` overrides the search."""
    if os.environ.get("HIL_LIBNGSPICE"):
        return os.environ["HIL_LIBNGSPICE"]
    found = ctypes.util.find_library("ngspice")
    if found:
        return found
    for name in ("libngspice.so.0", "libngspice.so", "libngspice.dylib"):
        try:
            ctypes.CDLL(name)
            return name
        except OSError:
            continue
    return None


def check_libngspice() -> str:
    """The library's path if it loads in this process; else :class:`DeviceError` saying what to install."""
    path = find_libngspice()
    if path is None:
        raise DeviceError(f"libngspice not found; {INSTALL_HINT}")
    try:
        ctypes.CDLL(path)
    except OSError as exc:
        raise DeviceError(f"cannot load libngspice from {path}: {exc}; {INSTALL_HINT}") from exc
    return path


class NgSpice:
    """The process's libngspice. Not thread-safe; create one per process."""

    def __init__(self, library: str | None = None) -> None:
        path = library or find_libngspice()
        if path is None:
            raise DeviceError(f"libngspice not found; {INSTALL_HINT}")
        try:
            self._lib = ctypes.CDLL(path)
        except OSError as exc:
            raise DeviceError(f"cannot load libngspice from {path}: {exc}; {INSTALL_HINT}") from exc
        lib = self._lib
        lib.ngSpice_Init.argtypes = [_SendChar, _SendStat, _ControlledExit, ctypes.c_void_p, ctypes.c_void_p,
                                     _BGThreadRunning, ctypes.c_void_p]
        lib.ngSpice_Init.restype = ctypes.c_int
        lib.ngSpice_Command.argtypes = [ctypes.c_char_p]
        lib.ngSpice_Command.restype = ctypes.c_int
        lib.ngSpice_Circ.argtypes = [ctypes.POINTER(ctypes.c_char_p)]
        lib.ngSpice_Circ.restype = ctypes.c_int
        lib.ngGet_Vec_Info.argtypes = [ctypes.c_char_p]
        lib.ngGet_Vec_Info.restype = ctypes.POINTER(_VectorInfo)
        lib.ngSpice_CurPlot.restype = ctypes.c_char_p
        self.output: list[str] = []
        self.exited: int | None = None
        # keep the callbacks referenced for the library's lifetime
        self._callbacks = (_SendChar(self._on_char), _SendStat(self._on_stat), _ControlledExit(self._on_exit),
                           _BGThreadRunning(self._on_bg))
        lib.ngSpice_Init(self._callbacks[0], self._callbacks[1], self._callbacks[2], None, None,
                         self._callbacks[3], None)

    # -- callbacks -------------------------------------------------------------------------------------
    def _on_char(self, text: bytes, _id: int, _user: object) -> int:
        self.output.append(text.decode(errors="replace"))
        return 0

    def _on_stat(self, _text: bytes, _id: int, _user: object) -> int:
        return 0

    def _on_exit(self, status: int, _unload: bool, _quit: bool, _id: int, _user: object) -> int:
        self.exited = status
        return status

    def _on_bg(self, _running: bool, _id: int, _user: object) -> int:
        return 0

    # -- calls -------------------------------------------------------------------------------------------
    def command(self, text: str) -> None:
        """Run one interactive command (``alterparam``, ``reset``, ``ac ...``, ``destroy all``)."""
        if self._lib.ngSpice_Command(text.encode()) != 0:
            raise DeviceError(f"ngspice rejected the command {text!r}: {self.errors()[-3:]}")

    def load_circuit(self, netlist: str | Iterable[str]) -> None:
        """Parse a netlist (text or lines; the first line is the title, ``.end`` is added if missing)."""
        lines = netlist.splitlines() if isinstance(netlist, str) else list(netlist)
        lines = [ln for ln in lines if ln.strip()]
        if not lines or lines[-1].strip().lower() != ".end":
            lines.append(".end")
        arr = (ctypes.c_char_p * (len(lines) + 1))(*[ln.encode() for ln in lines], None)
        start = len(self.output)
        if self._lib.ngSpice_Circ(arr) != 0:
            raise DeviceError(f"ngspice could not load the netlist: {self.errors(start)[-5:]}")
        errors = self.errors(start)
        if errors:
            raise DeviceError(f"ngspice reported errors loading the netlist: {errors[-5:]}")

    def vector(self, name: str) -> np.ndarray:
        """A copy of vector ``name`` of the current plot: float64, or complex128 for AC results."""
        info = self._lib.ngGet_Vec_Info(name.encode())
        if not info:
            raise DeviceError(f"ngspice has no vector {name!r} in plot {self.current_plot()!r}")
        v = info.contents
        n = int(v.v_length)
        if v.v_compdata:
            raw = np.ctypeslib.as_array(ctypes.cast(v.v_compdata, ctypes.POINTER(ctypes.c_double)), shape=(2 * n,))
            return raw[0::2].copy() + 1j * raw[1::2].copy()
        if v.v_realdata:
            return np.ctypeslib.as_array(v.v_realdata, shape=(n,)).copy()
        return np.zeros(0)

    def current_plot(self) -> str:
        plot = self._lib.ngSpice_CurPlot()
        return plot.decode() if plot else ""

    def errors(self, start: int = 0) -> list[str]:
        """Error lines printed since output index ``start``."""
        return [ln for ln in self.output[start:] if _is_error(ln)]

    def clear_output(self) -> None:
        self.output.clear()


def _is_error(line: str) -> bool:
    text = line.removeprefix("stderr ").removeprefix("stdout ").strip().lower()
    return text.startswith("error") or text.startswith("fatal")
