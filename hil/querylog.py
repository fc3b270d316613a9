"""Append-only, crash-safe HDF5 log of every query that reaches a BlackBox.

One row per queried point. Columns (HDF5 datasets, chunked, resizable along
axis 0, no compression):

============  ======================  ==========================================
``x``         ``(N, input_dim)``      float32, the (validated) input
``y``         ``(N, *output_shape)``  the answer, in the log's output dtype
``t_start``   ``(N,)`` float64        unix seconds when the batch was sent
``t_end``     ``(N,)`` float64        unix seconds when the answer came back
``iteration`` ``(N,)`` int32          optimiser iteration (-1: none given)
``purpose``   ``(N,)`` uint8          index into the ``names`` attribute of the
                                      dataset (:data:`hil.blackbox.PURPOSES`)
``start``     ``(N,)`` int32          starting-point index of the row (-1: none)
``run``       ``(N,)`` uint16         index into the ``run_ids`` file attribute
``commit``    ``(N,)`` uint8          1 once the row's batch is complete
============  ======================  ==========================================

File attributes: ``format`` (``"hil.querylog"``), ``schema_version``,
``created`` (ISO time, UTC), ``config`` (JSON of the run config), ``versions``
(JSON: python, hil, torch, numpy, h5py, hdf5), ``run_ids`` and ``run_started``
(JSON lists, one entry per run: a resume appends one), plus any extra ``attrs``
given to :meth:`QueryLog.create` (non-scalars JSON-encoded; their names are
listed in the ``json_attrs`` attribute so :func:`read_log` decodes them).

Crash safety
------------
Requirement: after ``kill -9`` of the writer at any moment, the file opens with
a plain ``h5py.File(path, "r")`` and holds every batch whose :meth:`append`
returned.

*Design chosen: default (earliest) HDF5 file format, no SWMR, two flushes per
batch, commit column written last.* Measured with HDF5 2.0.0 / h5py 3.16: a
file written with ``libver="latest"`` + ``swmr_mode = True`` and killed does
**not** reopen with plain ``h5py.File(path, "r")`` ("file is already open for
write (may use <h5clear file> ...)"): the v3 superblock keeps a
"file open for write" flag that only ``h5clear`` resets. The default file
format (superblock v0) has no such flag, so a killed file opens normally for
reading *and* for appending, and attributes (``run_ids``) stay writable. In
~130 kill -9 / resume cycles at random moments (tiny rows with 8-row chunks,
and 22 KB optical rows), every killed file opened with plain h5py and held
every batch the writer had reported, with the right contents.

Each :meth:`append` of ``B`` rows at row ``n`` does:

1. resize every column to ``n + B``;
2. write ``x, y, t_start, t_end, iteration, purpose, start, run`` and
   ``commit = 0`` for the new rows;
3. ``flush()``: the data and the new extents are now in the file (the OS page
   cache: it survives the death of the process; this is not an ``fsync``, so it
   does not promise survival of a power cut);
4. write ``commit = 1`` for the new rows and ``flush()`` again. Only then does
   :meth:`append` return.

Because of the first flush, a ``commit == 1`` row on disk always has its data
on disk. A kill can leave columns of different lengths and an uncommitted
last batch, so a reader takes ``n = leading rows with commit == 1`` (capped by
the shortest column) and ignores the rest; :meth:`QueryLog.open_append`
truncates the columns to that ``n`` before writing again.

Chunking: ``x`` and ``y`` use ``chunk_rows`` rows per chunk (default: about
512 KB of ``x`` per chunk, 1..1024 rows), the one-number columns use at least
4096 rows per chunk. ``x``/``y`` chunks are written with ``fill_time="never"``
(no fill pass before the data lands; rows are only trusted once committed).

One writer per file: another process is refused by HDF5's file lock, this
process by a registry of open writers. A running writer holds that lock; :func:`read_log` and
:func:`summarize` open with ``locking=False`` so a live log can be inspected
(they read the last flushed state; if they catch a flush half-way they raise
:class:`~hil.errors.LogError` asking to retry).
"""

from __future__ import annotations

import json
import os
import platform
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from hil.errors import LogError
from hil.purposes import MAX_RUNS, PURPOSES

__all__ = [
    "SCHEMA_VERSION",
    "PURPOSES",
    "QueryLog",
    "LogData",
    "read_log",
    "summarize",
    "benchmark_append",
]

#: Version of the on-disk layout; readers refuse files with a larger number.
SCHEMA_VERSION = 1

FORMAT_NAME = "hil.querylog"

#: Columns in the order they are written; ``commit`` is always last.
_SCALAR_COLUMNS: dict[str, np.dtype] = {
    "t_start": np.dtype("float64"),
    "t_end": np.dtype("float64"),
    "iteration": np.dtype("int32"),
    "purpose": np.dtype("uint8"),
    "start": np.dtype("int32"),
    "run": np.dtype("uint16"),
}
_COLUMNS = ("x", "y", *_SCALAR_COLUMNS, "commit")
_RESERVED_ATTRS = frozenset(
    {"format", "schema_version", "created", "config", "versions", "run_ids", "run_started", "json_attrs",
     "run_summaries"}
)
_JSON_ATTRS = ("config", "versions", "run_ids", "run_started", "run_summaries")
_MAX_RUNS = MAX_RUNS
_SCALAR_CHUNK_ROWS = 4096
_TARGET_CHUNK_BYTES = 1 << 19

#: Real paths of the logs this process has open for writing (HDF5 would let a
#: second writer in the same process share the file and interleave rows).
_OPEN_WRITERS: set[str] = set()


def _now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _version_of(dist: str) -> str:
    from importlib import metadata

    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "unknown"


def _versions() -> dict[str, str]:
    return {
        "python": platform.python_version(),
        "hil": _version_of("hil"),
        "torch": _version_of("torch"),
        "numpy": np.__version__,
        "h5py": h5py.__version__,
        "hdf5": h5py.version.hdf5_version,
    }


def _json(value: Any, what: str) -> str:
    try:
        return json.dumps(value, sort_keys=True, default=_json_default)
    except (TypeError, ValueError) as exc:
        raise LogError(f"{what} cannot be stored as JSON: {exc}") from exc


def _json_default(obj: Any) -> Any:
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"object of type {type(obj).__name__} is not JSON serializable")


def _plain(value: Any) -> Any:
    """h5py attribute value -> plain Python (str, int, float, bool, list)."""
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    return value


def _default_chunk_rows(input_dim: int) -> int:
    row = max(1, 4 * input_dim)
    return int(min(1024, max(1, _TARGET_CHUNK_BYTES // row)))


def _recover_length(f: h5py.File) -> int:
    """Rows that are complete: leading ``commit == 1`` rows, at most the shortest column."""
    m = min(int(f[c].shape[0]) for c in _COLUMNS)
    if m == 0:
        return 0
    commit = f["commit"][:m]
    bad = np.flatnonzero(commit != 1)
    return int(bad[0]) if bad.size else m


def _check_hil_log(f: h5py.File, path: str) -> int:
    """Raise :class:`LogError` unless ``f`` is a hil query log this version can read; return its schema."""
    fmt = _plain(f.attrs.get("format", ""))
    if fmt != FORMAT_NAME or "schema_version" not in f.attrs:
        raise LogError(
            f"{path} is an HDF5 file but not a hil query log (no format={FORMAT_NAME!r} attribute)"
        )
    schema = int(_plain(f.attrs["schema_version"]))
    if schema > SCHEMA_VERSION:
        raise LogError(
            f"{path} has log schema {schema}, newer than this hil understands ({SCHEMA_VERSION}); upgrade hil"
        )
    missing = [c for c in _COLUMNS if c not in f]
    if missing:
        raise LogError(f"{path} is not a complete hil query log: missing column(s) {', '.join(missing)}")
    return schema


def _decode_attrs(f: h5py.File) -> dict[str, Any]:
    raw = {k: _plain(v) for k, v in f.attrs.items()}
    json_keys = set(_JSON_ATTRS)
    if "json_attrs" in raw:
        try:
            json_keys |= set(json.loads(raw.pop("json_attrs")))
        except (TypeError, ValueError):
            pass
    out: dict[str, Any] = {}
    for k, v in raw.items():
        if k in json_keys and isinstance(v, str):
            try:
                v = json.loads(v)
            except ValueError:
                pass
        out[k] = v
    out["schema_version"] = int(out.get("schema_version", 0))
    out.setdefault("config", {})
    out.setdefault("versions", {})
    out.setdefault("run_ids", [])
    return out


def _open_read(path: str | os.PathLike[str]) -> tuple[h5py.File, str]:
    p = str(path)
    if not os.path.exists(p):
        raise LogError(f"query log {p} does not exist")
    if os.path.isdir(p):
        raise LogError(f"query log {p} is a directory, not an HDF5 file")
    if not h5py.is_hdf5(p):
        raise LogError(f"{p} is not an HDF5 file, so not a hil query log")
    try:
        # no lock: a live log (another process holds the writer's lock) can still be read
        f = h5py.File(p, "r", locking=False)
    except OSError:
        try:  # this process has it open already (HDF5 wants the same locking flags then)
            f = h5py.File(p, "r")
        except OSError as exc:
            raise LogError(f"cannot open query log {p}: {exc}") from exc
    try:
        _check_hil_log(f, p)
    except BaseException:
        f.close()
        raise
    return f, p


class QueryLog:
    """Writer of a query log; see the module docstring for the layout and crash-safety design.

    Make one with :meth:`create` (new file) or :meth:`open_append` (continue an
    existing, possibly killed, log). Hand it to ``BlackBox.attach_log``; every
    answered batch then becomes one :meth:`append`.
    """

    def __init__(self, file: h5py.File, path: str, run_index: int) -> None:
        # private: use create() / open_append()
        self._file: h5py.File | None = file
        self._path = path
        self._run_index = run_index
        self._ds = {c: file[c] for c in _COLUMNS}
        x = self._ds["x"]
        y = self._ds["y"]
        self._input_dim = int(x.shape[1])
        self._output_shape = tuple(int(s) for s in y.shape[1:])
        self._output_dtype = np.dtype(y.dtype)
        names = _plain(self._ds["purpose"].attrs.get("names", json.dumps(list(PURPOSES))))
        self._purpose_code = {name: i for i, name in enumerate(json.loads(names))}
        self._n = int(x.shape[0])
        self._key = os.path.realpath(path)
        _OPEN_WRITERS.add(self._key)

    # -- construction ----------------------------------------------------------------
    @classmethod
    def create(
        cls,
        path: str | os.PathLike[str],
        *,
        input_dim: int,
        output_shape: tuple[int, ...],
        output_dtype: Any = "float32",
        run_id: str,
        config: dict[str, Any] | None = None,
        attrs: dict[str, Any] | None = None,
        chunk_rows: int | None = None,
    ) -> QueryLog:
        """Create a new log at ``path``; refuses to overwrite an existing file."""
        p = str(path)
        if os.path.exists(p):
            raise LogError(
                f"query log {p} already exists; refusing to overwrite it (use open_append to resume)"
            )
        input_dim = int(input_dim)
        if input_dim < 1:
            raise LogError(f"input_dim must be >= 1, got {input_dim}")
        try:
            out_shape = tuple(int(s) for s in output_shape)
        except TypeError as exc:
            raise LogError(f"output_shape must be a tuple of ints, got {output_shape!r}") from exc
        if any(s < 1 for s in out_shape):
            raise LogError(f"output_shape entries must be >= 1, got {out_shape}")
        try:
            dtype = np.dtype(output_dtype)
        except TypeError as exc:
            raise LogError(f"output_dtype {output_dtype!r} is not a numpy dtype") from exc
        if dtype.kind not in "biuf":
            raise LogError(f"output_dtype must be a bool, integer or float dtype, got {dtype}")
        if not isinstance(run_id, str) or not run_id:
            raise LogError(f"run_id must be a non-empty string, got {run_id!r}")
        if chunk_rows is None:
            chunk_rows = _default_chunk_rows(input_dim)
        chunk_rows = int(chunk_rows)
        if chunk_rows < 1:
            raise LogError(f"chunk_rows must be >= 1, got {chunk_rows}")
        extra = dict(attrs or {})
        clash = sorted(_RESERVED_ATTRS & set(extra))
        if clash:
            raise LogError(f"attrs may not use the reserved name(s) {', '.join(clash)}")
        config_json = _json(config or {}, "config")
        extra_stored: dict[str, Any] = {}
        json_attrs: list[str] = []
        for k, v in extra.items():
            if not isinstance(k, str) or not k:
                raise LogError(f"attrs keys must be non-empty strings, got {k!r}")
            if isinstance(v, (bool, int, float, str, np.bool_, np.integer, np.floating)):
                extra_stored[k] = v
            else:
                extra_stored[k] = _json(v, f"attrs[{k!r}]")
                json_attrs.append(k)

        parent = os.path.dirname(os.path.abspath(p))
        os.makedirs(parent, exist_ok=True)
        try:
            f = h5py.File(p, "w-")  # default libver: see module docstring
        except (OSError, FileExistsError) as exc:
            raise LogError(f"cannot create query log {p}: {exc}") from exc
        try:
            f.attrs["format"] = FORMAT_NAME
            f.attrs["schema_version"] = SCHEMA_VERSION
            f.attrs["created"] = _now_iso()
            f.attrs["config"] = config_json
            f.attrs["versions"] = _json(_versions(), "versions")
            f.attrs["run_ids"] = json.dumps([run_id])
            f.attrs["run_started"] = json.dumps([_now_iso()])
            if json_attrs:
                f.attrs["json_attrs"] = json.dumps(json_attrs)
            for k, v in extra_stored.items():
                f.attrs[k] = v
            f.create_dataset(
                "x",
                shape=(0, input_dim),
                maxshape=(None, input_dim),
                dtype="float32",
                chunks=(chunk_rows, input_dim),
                fill_time="never",
            )
            f.create_dataset(
                "y",
                shape=(0, *out_shape),
                maxshape=(None, *out_shape),
                dtype=dtype,
                chunks=(chunk_rows, *out_shape),
                fill_time="never",
            )
            scalar_chunk = max(chunk_rows, _SCALAR_CHUNK_ROWS)
            for name, dt in [*_SCALAR_COLUMNS.items(), ("commit", np.dtype("uint8"))]:
                f.create_dataset(name, shape=(0,), maxshape=(None,), dtype=dt, chunks=(scalar_chunk,))
            f["purpose"].attrs["names"] = json.dumps(list(PURPOSES))
            f["run"].attrs["note"] = "index into the run_ids file attribute (JSON list)"
            f["commit"].attrs["note"] = "1 once the row's batch is complete; written last"
            f.flush()
        except BaseException as exc:
            f.close()
            try:
                os.remove(p)
            except OSError:
                pass
            if isinstance(exc, LogError):
                raise
            if isinstance(exc, (OSError, ValueError, TypeError)):
                raise LogError(f"cannot create query log {p}: {exc}") from exc
            raise
        return cls(f, p, 0)

    @classmethod
    def open_append(cls, path: str | os.PathLike[str], *, run_id: str) -> QueryLog:
        """Reopen an existing (possibly killed) log to continue writing under a new ``run_id``.

        Recovers the committed length, truncates every column to it and records
        ``run_id`` as a new run.
        """
        p = str(path)
        if not isinstance(run_id, str) or not run_id:
            raise LogError(f"run_id must be a non-empty string, got {run_id!r}")
        if not os.path.exists(p):
            raise LogError(f"cannot resume: query log {p} does not exist")
        if not h5py.is_hdf5(p):
            raise LogError(f"cannot resume: {p} is not an HDF5 file, so not a hil query log")
        if os.path.realpath(p) in _OPEN_WRITERS:
            raise LogError(f"cannot resume query log {p}: this process already has it open for writing")
        try:
            f = h5py.File(p, "r+")
        except OSError as exc:
            raise LogError(
                f"cannot open query log {p} for appending (is another process still writing it?): {exc}"
            ) from exc
        try:
            _check_hil_log(f, p)
            n = _recover_length(f)
            for c in _COLUMNS:
                if f[c].shape[0] != n:
                    f[c].resize(n, axis=0)
            try:
                run_ids = list(json.loads(_plain(f.attrs["run_ids"])))
                started = list(json.loads(_plain(f.attrs.get("run_started", "[]"))))
            except (KeyError, TypeError, ValueError) as exc:
                raise LogError(f"{p}: unreadable run_ids attribute: {exc}") from exc
            if len(run_ids) >= _MAX_RUNS:
                raise LogError(f"{p} already holds {len(run_ids)} runs, the most a log can hold")
            run_ids.append(run_id)
            started.append(_now_iso())
            f.attrs["run_ids"] = json.dumps(run_ids)
            f.attrs["run_started"] = json.dumps(started)
            f.flush()
        except BaseException as exc:
            f.close()
            if isinstance(exc, OSError):
                raise LogError(f"cannot resume query log {p}: {exc}") from exc
            raise
        return cls(f, p, len(run_ids) - 1)

    # -- properties --------------------------------------------------------------------
    @property
    def path(self) -> str:
        return self._path

    @property
    def n_rows(self) -> int:
        """Rows committed so far (all runs)."""
        return self._n

    @property
    def input_dim(self) -> int:
        return self._input_dim

    @property
    def output_shape(self) -> tuple[int, ...]:
        return self._output_shape

    @property
    def output_dtype(self) -> np.dtype:
        return self._output_dtype

    @property
    def run_index(self) -> int:
        """Index of this writer's run in the ``run_ids`` attribute (value of the ``run`` column)."""
        return self._run_index

    @property
    def closed(self) -> bool:
        return self._file is None

    def row_x(self, i: int) -> np.ndarray:
        """The input of committed row ``i`` (``input_dim``, float32)."""
        if self._file is None:
            raise LogError(f"query log {self._path} is closed")
        if not 0 <= i < self._n:
            raise LogError(f"query log {self._path}: row {i} is not committed ({self._n} rows)")
        return np.asarray(self._file["x"][i], dtype=np.float32)

    # -- writing -----------------------------------------------------------------------
    def _check_y(self, y: Any, b: int) -> np.ndarray:
        y = np.asarray(y)
        expected = (b, *self._output_shape)
        if y.shape != expected:
            raise LogError(f"query log {self._path}: y has shape {y.shape}, expected {expected}")
        dt = self._output_dtype
        if y.dtype == dt:
            return np.ascontiguousarray(y)
        if y.dtype.kind not in "biuf":
            raise LogError(f"query log {self._path}: y has dtype {y.dtype}, expected numbers ({dt})")
        if dt.kind == "f" or np.can_cast(y.dtype, dt, casting="safe"):
            return np.ascontiguousarray(y, dtype=dt)
        # integer (or bool) log dtype, y of another kind: store only if the values are exactly representable
        if dt.kind == "b":
            ok = bool(np.isin(y, (0, 1)).all())
        else:
            info = np.iinfo(dt)
            with np.errstate(invalid="ignore"):
                ok = bool(np.all(np.isfinite(y))) if y.dtype.kind == "f" else True
                ok = ok and bool(np.all((y >= info.min) & (y <= info.max)))
                if ok and y.dtype.kind == "f":
                    ok = bool(np.all(np.floor(y) == y))
        if not ok:
            raise LogError(
                f"query log {self._path}: y (dtype {y.dtype}) has values that {dt} cannot hold exactly "
                f"(non-integer, out of range or not finite); create the log with a matching output_dtype"
            )
        return np.ascontiguousarray(y, dtype=dt)

    def append(
        self,
        x: np.ndarray,
        y: np.ndarray,
        t_start: float,
        t_end: float,
        iteration: int,
        purpose: str,
        start: np.ndarray | None = None,
    ) -> None:
        """Append one answered batch (``B`` rows) and make it crash-safe before returning.

        ``x``: ``(B, input_dim)``; ``y``: ``(B, *output_shape)``; ``start``:
        ``(B,)`` starting-point indices or ``None`` (stored as -1). An empty
        batch is a no-op.
        """
        if self._file is None:
            raise LogError(f"query log {self._path} is closed")
        x = np.asarray(x)
        if x.ndim != 2 or x.shape[1] != self._input_dim:
            raise LogError(
                f"query log {self._path}: x has shape {x.shape}, expected (batch, {self._input_dim})"
            )
        if x.dtype.kind not in "biuf":
            raise LogError(f"query log {self._path}: x has dtype {x.dtype}, expected numbers")
        b = int(x.shape[0])
        yv = self._check_y(y, b)
        if purpose not in self._purpose_code:
            raise LogError(
                f"query log {self._path}: unknown purpose {purpose!r}; expected one of "
                f"{', '.join(self._purpose_code)}"
            )
        if start is None:
            sv = np.full(b, -1, dtype=np.int32)
        else:
            sv = np.asarray(start)
            if sv.shape != (b,) or sv.dtype.kind not in "iu":
                raise LogError(
                    f"query log {self._path}: start must be {b} integers (one per row) or None, "
                    f"got shape {sv.shape} dtype {sv.dtype}"
                )
            sv = sv.astype(np.int32)
        try:
            t0, t1 = float(t_start), float(t_end)
            it = int(iteration)
        except (TypeError, ValueError) as exc:
            raise LogError(
                f"query log {self._path}: t_start/t_end must be numbers, iteration an int"
            ) from exc
        if not -(2**31) <= it < 2**31:
            raise LogError(f"query log {self._path}: iteration {it} does not fit in int32")
        if b == 0:
            return
        xv = np.ascontiguousarray(x, dtype=np.float32)
        n, m = self._n, self._n + b
        ds = self._ds
        cols = {
            "x": xv,
            "y": yv,
            "t_start": np.full(b, t0, dtype=np.float64),
            "t_end": np.full(b, t1, dtype=np.float64),
            "iteration": np.full(b, it, dtype=np.int32),
            "purpose": np.full(b, self._purpose_code[purpose], dtype=np.uint8),
            "start": sv,
            "run": np.full(b, self._run_index, dtype=np.uint16),
            "commit": np.zeros(b, dtype=np.uint8),
        }
        try:
            for c in _COLUMNS:
                ds[c].resize(m, axis=0)
            for c in _COLUMNS:
                ds[c].write_direct(cols[c], dest_sel=np.s_[n:m])
            self._file.flush()  # data + extents reach the file before any commit flag
            ds["commit"].write_direct(np.ones(b, dtype=np.uint8), dest_sel=np.s_[n:m])
            self._file.flush()
        except (OSError, ValueError, TypeError, RuntimeError) as exc:
            raise LogError(f"query log {self._path}: could not append {b} rows at row {n}: {exc}") from exc
        self._n = m

    def record_run_summary(self, summary: dict[str, Any]) -> None:
        """Store ``summary`` (JSON-able: queries, wall and busy seconds, duty cycle, ...) for this run under
        the ``run_summaries`` attribute (``{run_id: summary}``), and flush."""
        if self._file is None:
            raise LogError(f"query log {self._path} is closed")
        f = self._file
        run_id = json.loads(_plain(f.attrs["run_ids"]))[self._run_index]
        summaries = json.loads(_plain(f.attrs.get("run_summaries", "{}")))
        summaries[run_id] = json.loads(_json(summary, "run summary"))
        f.attrs["run_summaries"] = json.dumps(summaries)
        f.flush()

    # -- closing -----------------------------------------------------------------------
    def flush(self) -> None:
        if self._file is not None:
            self._file.flush()

    def close(self) -> None:
        """Close the file (idempotent). Committed rows are already safe; closing just releases it."""
        f, self._file = self._file, None
        if f is not None:
            _OPEN_WRITERS.discard(getattr(self, "_key", ""))
            try:
                f.close()
            except OSError as exc:
                raise LogError(f"query log {self._path}: error while closing: {exc}") from exc

    def __enter__(self) -> QueryLog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        try:
            if getattr(self, "_file", None) is not None:
                self.close()
        except Exception:
            pass

    def __repr__(self) -> str:
        state = "closed" if self._file is None else f"{self._n} rows"
        return f"QueryLog({self._path!r}, {state})"


# -- reading ---------------------------------------------------------------------------


@dataclass
class LogData:
    """A query log read into memory: numpy arrays of one consistent length ``n``.

    ``purpose`` holds uint8 codes into ``purpose_names``; use :meth:`mask` or
    :meth:`purpose_labels` for names. ``run`` indexes ``attrs["run_ids"]``.
    """

    x: np.ndarray
    y: np.ndarray
    t_start: np.ndarray
    t_end: np.ndarray
    iteration: np.ndarray
    purpose: np.ndarray
    start: np.ndarray
    run: np.ndarray
    attrs: dict[str, Any] = field(default_factory=dict)
    purpose_names: tuple[str, ...] = PURPOSES

    def __len__(self) -> int:
        return int(self.x.shape[0])

    @property
    def run_ids(self) -> list[str]:
        return list(self.attrs.get("run_ids", []))

    def mask(self, purpose: str) -> np.ndarray:
        """Boolean row mask of the rows logged with ``purpose``."""
        if purpose not in self.purpose_names:
            raise LogError(f"unknown purpose {purpose!r}; expected one of {', '.join(self.purpose_names)}")
        return self.purpose == self.purpose_names.index(purpose)

    def purpose_labels(self) -> np.ndarray:
        """The ``purpose`` column as an array of names."""
        names = np.asarray(self.purpose_names, dtype=object)
        return names[self.purpose.astype(np.intp)]


def _purpose_names(f: h5py.File) -> tuple[str, ...]:
    raw = f["purpose"].attrs.get("names")
    if raw is None:
        return PURPOSES
    try:
        return tuple(json.loads(_plain(raw)))
    except (TypeError, ValueError):
        return PURPOSES


def log_status(path: str | os.PathLike[str]) -> tuple[int, bool]:
    """``(committed rows, whether the last run recorded its summary)``, reading only the ``commit`` column and
    the attributes: cheap enough to poll a live log."""
    f, p = _open_read(path)
    try:
        with f:
            attrs = _decode_attrs(f)
            run_ids = list(attrs.get("run_ids") or [])
            return _recover_length(f), bool(run_ids) and run_ids[-1] in (attrs.get("run_summaries") or {})
    except OSError as exc:
        raise LogError(f"cannot read query log {p}: {exc} (if a writer is flushing it right now, retry)") from exc


def read_log(path: str | os.PathLike[str]) -> LogData:
    """Read a whole log (read-only); only committed rows are returned.

    Raises :class:`LogError` for a missing file, a file that is not a hil log,
    or a log written with a newer schema.
    """
    f, p = _open_read(path)
    try:
        with f:
            n = _recover_length(f)
            cols = {c: f[c][:n] for c in _COLUMNS if c != "commit"}
            attrs = _decode_attrs(f)
            names = _purpose_names(f)
    except OSError as exc:
        raise LogError(
            f"cannot read query log {p}: {exc} (if a writer is flushing it right now, retry)"
        ) from exc
    return LogData(attrs=attrs, purpose_names=names, **cols)


def _fmt_time(t: float) -> str:
    return datetime.fromtimestamp(t, tz=timezone.utc).isoformat(timespec="seconds")


def _minmax(ds: h5py.Dataset, n: int) -> tuple[float, float, int] | None:
    """Finite min and max of the first ``n`` rows, and how many rows hold a non-finite value."""
    if n == 0:
        return None
    row_bytes = max(1, int(np.prod(ds.shape[1:], dtype=np.int64)) * ds.dtype.itemsize)
    step = max(1, (64 << 20) // row_bytes)
    lo, hi, bad_rows = np.inf, -np.inf, 0
    for i in range(0, n, step):
        block = ds[i : min(n, i + step)]
        if block.dtype.kind == "f":
            ok = np.isfinite(block)
            bad_rows += int((~ok.reshape(len(block), -1).all(axis=1)).sum())
            finite = block[ok]
            if finite.size == 0:
                continue
            lo, hi = min(lo, float(finite.min())), max(hi, float(finite.max()))
        else:
            lo, hi = min(lo, float(block.min())), max(hi, float(block.max()))
    return (lo, hi, bad_rows) if lo <= hi else None


def summarize(path: str | os.PathLike[str]) -> str:
    """A human-readable summary of a log (for ``hil log info``); reads ``x``/``y`` in slabs."""
    f, p = _open_read(path)
    lines: list[str] = []
    try:
        with f:
            n = _recover_length(f)
            attrs = _decode_attrs(f)
            names = _purpose_names(f)
            t0 = f["t_start"][:n]
            t1 = f["t_end"][:n]
            it = f["iteration"][:n]
            pur = f["purpose"][:n]
            run = f["run"][:n]
            input_dim = int(f["x"].shape[1])
            out_shape = tuple(int(s) for s in f["y"].shape[1:])
            out_dtype = np.dtype(f["y"].dtype)
            x_mm = _minmax(f["x"], n)
            y_mm = _minmax(f["y"], n)
            stored = max(int(f[c].shape[0]) for c in _COLUMNS)
    except OSError as exc:
        raise LogError(
            f"cannot read query log {p}: {exc} (if a writer is flushing it right now, retry)"
        ) from exc

    versions = attrs.get("versions") or {}
    run_ids = list(attrs.get("run_ids") or [])
    config = attrs.get("config") or {}
    lines.append(f"path:          {p}")
    ver = ", ".join(f"{k} {v}" for k, v in versions.items()) if isinstance(versions, dict) else str(versions)
    lines.append(f"schema:        {attrs['schema_version']}" + (f" (written with {ver})" if ver else ""))
    if "created" in attrs:
        lines.append(f"created:       {attrs['created']}")
    if isinstance(config, dict) and config.get("name"):
        lines.append(f"config:        {config['name']}")
    counts = np.bincount(run.astype(np.intp), minlength=len(run_ids)) if n else np.zeros(len(run_ids), int)
    runs = ", ".join(
        f"{rid} ({int(counts[i]) if i < len(counts) else 0} rows)" for i, rid in enumerate(run_ids)
    )
    lines.append(f"runs:          {len(run_ids)}: {runs}")
    extra = f" ({stored - n} uncommitted row(s) after them ignored)" if stored > n else ""
    lines.append(f"rows:          {n}{extra}")
    if n:
        by = np.bincount(pur.astype(np.intp), minlength=len(names))
        parts = [f"{names[i] if i < len(names) else f'#{i}'} {int(c)}" for i, c in enumerate(by) if c]
        lines.append(f"by purpose:    {', '.join(parts)}")
        given = it[it >= 0]
        if given.size:
            lines.append(f"iterations:    {int(given.min())} .. {int(given.max())}")
        else:
            lines.append("iterations:    none recorded")
        first, last = float(t0.min()), float(t1.max())
        span = last - first
        # batch boundaries: a new batch starts where (t_start, run) changes
        new = np.ones(n, dtype=bool)
        new[1:] = (t0[1:] != t0[:-1]) | (run[1:] != run[:-1])
        busy = float(np.sum((t1 - t0)[new]))
        lines.append(
            f"time span:     {_fmt_time(first)} .. {_fmt_time(last)} ({span:.3f} s, {int(new.sum())} batches)"
        )
        rate = f"{n / span:.1f}" if span > 0 else "n/a"
        brate = f"{n / busy:.1f}" if busy > 0 else "n/a"
        lines.append(f"queries/s:     {rate} over the span, {brate} while the device was busy ({busy:.3f} s)")
    lines.append(f"input dim:     {input_dim}")
    lines.append(f"output:        shape {out_shape}, dtype {out_dtype}")
    if x_mm is not None:
        lines.append(f"x range:       {x_mm[0]:.6g} .. {x_mm[1]:.6g}")
    if y_mm is not None:
        lines.append(f"y range:       {y_mm[0]:.6g} .. {y_mm[1]:.6g}")
        if y_mm[2]:
            lines.append(f"non-finite y:  {y_mm[2]} rows (failed or invalid queries)")
    other = {k: v for k, v in attrs.items() if k not in _RESERVED_ATTRS}
    for k, v in sorted(other.items()):
        lines.append(f"attr {k}: {v}")
    return "\n".join(lines)


# -- benchmark -------------------------------------------------------------------------


def benchmark_append(
    path: str | os.PathLike[str],
    *,
    rows: int = 20000,
    batch: int = 256,
    input_dim: int = 3600,
    output_shape: tuple[int, ...] = (64, 64),
    output_dtype: Any = "uint16",
    chunk_rows: int | None = None,
) -> dict[str, float]:
    """Append ``rows`` random rows in batches of ``batch`` through the full crash-safe path.

    Creates a new log at ``path`` (refuses an existing file) and leaves it
    there. Timing covers the appends and the final close, not the creation of
    the random data. Returns ``rows``, ``batch``, ``seconds``, ``rows_per_s``,
    ``mb_per_s`` (10^6 bytes of row data per second) and ``row_bytes``.
    """
    rows, batch = int(rows), int(batch)
    if rows < 1 or batch < 1:
        raise LogError("benchmark_append: rows and batch must be >= 1")
    out_shape = tuple(int(s) for s in output_shape)
    dt = np.dtype(output_dtype)
    rng = np.random.default_rng(0)
    b0 = min(batch, rows)
    xb = rng.random((b0, input_dim), dtype=np.float32)
    if dt.kind == "f":
        yb = rng.random((b0, *out_shape)).astype(dt)
    elif dt.kind == "b":
        yb = rng.random((b0, *out_shape)) < 0.5
    else:
        hi = min(int(np.iinfo(dt).max), 4095)
        yb = rng.integers(0, hi + 1, size=(b0, *out_shape)).astype(dt)
    row_bytes = int(xb[0].nbytes + yb[0].nbytes + sum(d.itemsize for d in _SCALAR_COLUMNS.values()) + 1)
    log = QueryLog.create(
        path,
        input_dim=input_dim,
        output_shape=out_shape,
        output_dtype=dt,
        run_id="benchmark",
        config={"name": "benchmark_append"},
        chunk_rows=chunk_rows,
    )
    done = 0
    it = 0
    t_begin = time.perf_counter()
    try:
        while done < rows:
            b = min(b0, rows - done)
            now = time.time()
            log.append(xb[:b], yb[:b], now, now, it, "step")
            done += b
            it += 1
    finally:
        log.close()
    seconds = time.perf_counter() - t_begin
    rps = rows / seconds if seconds > 0 else float("inf")
    return {
        "rows": rows,
        "batch": batch,
        "seconds": seconds,
        "rows_per_s": rps,
        "mb_per_s": rps * row_bytes / 1e6,
        "row_bytes": row_bytes,
    }
