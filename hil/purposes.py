"""Why a query was made: the log's ``purpose`` column, and how many runs a log holds (a module of its own so the
log and the configs that name these need neither torch nor h5py)."""

from __future__ import annotations

#: Stored in the log's ``purpose`` column as an index (append only: logs store the index).
#: ``population``: a member of a population method's generation (CMA-ES, evolution strategies, a BO batch).
PURPOSES = ("step", "local_sample", "probe", "calibration", "initial", "evaluation", "population")

#: Runs one log holds: its ``run`` column stores a run's index as uint16.
MAX_RUNS = 2**16
