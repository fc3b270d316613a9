"""Why a query was made: the log's ``purpose`` column (a module of its own so the log needs no torch)."""

from __future__ import annotations

#: Stored in the log's ``purpose`` column as an index (append only: logs store the index).
#: ``population``: a member of a population method's generation (CMA-ES, evolution strategies, a BO batch).
PURPOSES = ("step", "local_sample", "probe", "calibration", "initial", "evaluation", "population")
