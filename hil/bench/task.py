"""Benchmark tasks as data: a YAML file names the problem, the budget, the seed sets and the methods.

::

    name: cnon
    title: CNON, 100 coupled oscillators
    problem:                       # the run config's blackbox and objective sections
      blackbox: {type: cnon_twin, dim: 100, ...}
      objective: {type: target_distance, ...}
    budget: 3200                   # total device queries per method and seed set (all starts, all purposes)
    seeds: [0, 1, 2]               # seed sets: starting points, samples, surrogate initialisation
    fractions: [0.25, 0.5, 1.0]    # where the table reports
    extras: [duty_cycle]           # extra measurements (hil.bench.extras)
    score: measured                # measured (the objective of each answer) | expected: a stochastic
                                   # problem's expected_objective at each start's recommended point per round
    reseed_blackbox: false         # true: the blackbox's seed is the seed set's (a stochastic twin's noise)
    quick: {budget: 800, seeds: [0], methods: [gradpie, cmaes]}
    methods:
      gradpie:                     # a method is its optimiser (budget allocation included) and estimator
        kind: gradient             # gradient (hil's methods) | peer (what a lab would use instead) | reference
        optimizer: {type: gradient, n_starts: 8, local_samples: 1}
        estimator: {type: surrogate, loss: gradpie}
      cmaes:
        kind: peer
        optimizer: {type: cmaes}

Shipped tasks live beside this module (``hil/bench/tasks/NAME.yaml``); ``hil bench PATH.yaml`` runs a
user's. Every method's run config is validated before anything runs.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Literal

from hil.config import load_yaml
from hil.errors import ConfigError

TASK_KEYS = ("name", "title", "description", "problem", "budget", "seeds", "fractions", "extras", "quick", "methods",
             "score", "reseed_blackbox")
SCORES = ("measured", "expected")
METHOD_KEYS = ("kind", "optimizer", "estimator", "label")
KINDS = ("gradient", "peer", "reference")
#: sections a ``--set SECTION.KEY=VALUE`` override may name; ``optimizer`` and ``surrogate`` apply to every method
#: (every surrogate estimator), ``blackbox`` and ``objective`` to the problem
OVERRIDE_SECTIONS = ("blackbox", "objective", "optimizer", "surrogate")


@dataclass
class Method:
    name: str
    kind: Literal["gradient", "peer", "reference"]
    optimizer: dict[str, Any]
    estimator: dict[str, Any] | None = None


@dataclass
class BenchTask:
    name: str
    title: str
    problem: dict[str, Any]
    budget: int
    seeds: list[int]
    fractions: list[float]
    methods: dict[str, Method]
    extras: list[str] = field(default_factory=list)
    quick: dict[str, Any] = field(default_factory=dict)
    description: str = ""
    score: Literal["measured", "expected"] = "measured"
    reseed_blackbox: bool = False

    def run_config(self, method: Method, seed: int, budget: int | None = None) -> dict[str, Any]:
        """The run config of ``method`` under seed set ``seed``: the problem, the method's optimiser with the
        budget as its query limit and the seed, and its estimator (a surrogate's seed set too)."""
        optimizer = {"iterations": 10**9, **method.optimizer, "max_queries": budget or self.budget, "seed": seed}
        cfg: dict[str, Any] = {"name": f"{self.name}-{method.name}", **copy.deepcopy(self.problem),
                               "optimizer": optimizer}
        if self.reseed_blackbox:
            cfg["blackbox"]["seed"] = seed
        if method.estimator is not None:
            est = dict(method.estimator)
            if est.get("type") in ("surrogate", "lgso", "spsa"):
                est["seed"] = seed
            cfg["estimator"] = est
        return cfg

    def quick_version(self) -> BenchTask:
        """The ``--quick`` variant: the ``quick:`` budget, seeds and methods."""
        q = self.quick
        methods = {k: v for k, v in self.methods.items() if k in q.get("methods", list(self.methods))}
        return BenchTask(self.name, self.title, copy.deepcopy(q.get("problem", self.problem)),
                         int(q.get("budget", self.budget)), list(q.get("seeds", self.seeds[:1])), self.fractions,
                         methods, [e for e in self.extras if e in q.get("extras", self.extras)], {}, self.description,
                         self.score, self.reseed_blackbox)

    def with_overrides(self, overrides: dict[str, dict[str, Any]]) -> BenchTask:
        task = copy.deepcopy(self)
        for section in ("blackbox", "objective"):
            if section in overrides:
                task.problem[section] = {**task.problem[section], **overrides[section]}
        for m in task.methods.values():  # an optimizer key goes to the methods whose type (or the loop) has it
            m.optimizer = {**m.optimizer, **{k: v for k, v in overrides.get("optimizer", {}).items()
                                             if _takes(m.optimizer.get("type", "gradient"), k)}}
            if m.estimator is not None and m.estimator.get("type") == "surrogate":
                m.estimator = {**m.estimator, **overrides.get("surrogate", {})}
        return task


def _takes(optimizer_type: str, key: str) -> bool:
    import dataclasses

    from hil.errors import RegistryError
    from hil.optim.section import LOOP_KEYS
    from hil.registry import OPTIMIZERS

    if key in LOOP_KEYS:
        return True
    try:
        return key in {f.name for f in dataclasses.fields(OPTIMIZERS.get(optimizer_type).Config)}
    except RegistryError:  # an unknown type fails in validate_methods, naming the method
        return False


def shipped_tasks() -> list[str]:
    folder = resources.files("hil.bench") / "tasks"
    return sorted(p.name[:-5] for p in folder.iterdir() if p.name.endswith(".yaml"))


def task_path(name_or_path: str) -> Path:
    """A shipped task's file, or a user's task file."""
    if name_or_path.endswith((".yaml", ".yml")) or "/" in name_or_path:
        return Path(name_or_path)
    if name_or_path not in shipped_tasks():
        raise ConfigError(f"unknown benchmark task {name_or_path!r}; shipped tasks: {', '.join(shipped_tasks())} "
                          f"(or give a task file: hil bench my_task.yaml)")
    return Path(str(resources.files("hil.bench") / "tasks" / f"{name_or_path}.yaml"))


def _require(ok: bool, where: str, message: str) -> None:
    if not ok:
        raise ConfigError(f"{where}: {message}")


def load_task(name_or_path: str, *, validate: bool = True) -> BenchTask:
    """Read and validate a task; every method's run config is checked with :func:`hil.run.load_run_config`
    (``validate=False``: only the file's own structure, for a caller that selects methods first)."""
    path = task_path(name_or_path)
    data = load_yaml(path)
    where = str(path)
    unknown = [k for k in data if k not in TASK_KEYS]
    _require(not unknown, f"{where}: {unknown[0] if unknown else ''}",
             f"unknown key; allowed keys: {', '.join(TASK_KEYS)}")
    for key in ("name", "problem", "budget", "methods"):
        _require(key in data, where, f"missing key {key!r}")
    budget = data["budget"]
    _require(isinstance(budget, int) and not isinstance(budget, bool) and budget >= 1, f"{where}: budget",
             f"expected an integer >= 1 (total queries per method), got {budget!r}")
    for key in ("name", "title", "description"):
        _require(key not in data or isinstance(data[key], str), f"{where}: {key}",
                 f"expected a string, got {data.get(key)!r}")
    seeds = data.get("seeds", [0])
    _check_seeds(seeds, f"{where}: seeds")
    fractions = data.get("fractions", [0.25, 0.5, 1.0])
    _require(isinstance(fractions, list) and bool(fractions), f"{where}: fractions",
             f"expected a list of numbers in (0, 1], got {fractions!r}")
    for i, f in enumerate(fractions):
        _require(isinstance(f, (int, float)) and not isinstance(f, bool) and 0 < f <= 1, f"{where}: fractions[{i}]",
                 f"expected a number in (0, 1], got {f!r}")
    problem = data["problem"]
    _require(isinstance(problem, dict) and "blackbox" in problem and "objective" in problem, f"{where}: problem",
             "expected a mapping with blackbox and objective")
    bad = [k for k in problem if k not in ("blackbox", "objective")]
    _require(not bad, f"{where}: problem.{bad[0] if bad else ''}", "unknown key; allowed keys: blackbox, objective")
    methods_data = data["methods"]
    _require(isinstance(methods_data, dict) and methods_data, f"{where}: methods", "expected a mapping name -> method")
    methods = {}
    for name, m in methods_data.items():
        mw = f"{where}: methods.{name}"
        _require(isinstance(m, dict), mw, "expected a mapping with kind and optimizer")
        bad = [k for k in m if k not in METHOD_KEYS]
        _require(not bad, f"{mw}.{bad[0] if bad else ''}", f"unknown key; allowed keys: {', '.join(METHOD_KEYS)}")
        _require(m.get("kind") in KINDS, f"{mw}.kind", f"expected one of {', '.join(KINDS)}, got {m.get('kind')!r}")
        _require(isinstance(m.get("optimizer"), dict), f"{mw}.optimizer", "expected a mapping with a type")
        methods[name] = Method(name, m["kind"], dict(m["optimizer"]), m.get("estimator"))
    extras = data.get("extras", [])
    _require(isinstance(extras, list), f"{where}: extras", f"expected a list of extra measurements, got {extras!r}")
    for i, e in enumerate(extras):
        _require(isinstance(e, str), f"{where}: extras[{i}]", f"expected the name of an extra measurement, got {e!r}")
    quick = data.get("quick", {}) or {}
    _check_quick(quick, methods, f"{where}: quick")
    score = data.get("score", "measured")
    _require(score in SCORES, f"{where}: score", f"expected one of {', '.join(SCORES)}, got {score!r}")
    reseed = data.get("reseed_blackbox", False)
    _require(isinstance(reseed, bool), f"{where}: reseed_blackbox", f"expected true or false, got {reseed!r}")
    task = BenchTask(str(data["name"]), str(data.get("title", data["name"])), problem, budget, seeds,
                     [float(f) for f in fractions], methods, list(extras), quick, str(data.get("description", "")),
                     score, reseed)
    if validate:
        validate_methods(task)
    return task


def _check_seeds(seeds: Any, where: str) -> None:
    _require(isinstance(seeds, list) and bool(seeds), where, f"expected a non-empty list of seeds, got {seeds!r}")
    for i, s in enumerate(seeds):
        _require(isinstance(s, int) and not isinstance(s, bool) and 0 <= s < 2**32, f"{where}[{i}]",
                 f"expected an integer in [0, 2**32), got {s!r}")


QUICK_KEYS = ("budget", "seeds", "methods", "problem", "extras")


def _check_quick(quick: Any, methods: dict[str, Any], where: str) -> None:
    """The ``quick:`` section, checked whether or not ``--quick`` is asked for (a typo there fails now)."""
    _require(isinstance(quick, dict), where, f"expected a mapping ({', '.join(QUICK_KEYS)})")
    bad = [k for k in quick if k not in QUICK_KEYS]
    _require(not bad, f"{where}.{bad[0] if bad else ''}", f"unknown key; allowed keys: {', '.join(QUICK_KEYS)}")
    if "budget" in quick:
        b = quick["budget"]
        _require(isinstance(b, int) and not isinstance(b, bool) and b >= 1, f"{where}.budget",
                 f"expected an integer >= 1 (total queries per method), got {b!r}")
    if "seeds" in quick:
        _check_seeds(quick["seeds"], f"{where}.seeds")
    qm = quick.get("methods", [])
    _require(isinstance(qm, list), f"{where}.methods", f"expected a list of method names, got {qm!r}")
    for i, q in enumerate(qm):
        _require(isinstance(q, str) and q in methods, f"{where}.methods[{i}]", f"{q!r} is not a method of this task")
    qe = quick.get("extras", [])
    _require(isinstance(qe, list), f"{where}.extras", f"expected a list of extra measurements, got {qe!r}")
    for i, e in enumerate(qe):
        _require(isinstance(e, str), f"{where}.extras[{i}]", f"expected the name of an extra measurement, got {e!r}")


def validate_methods(task: BenchTask) -> None:
    """The problem as written, and every method's run config, must load before anything runs."""
    from hil.config import parse_typed
    from hil.registry import OBJECTIVES
    from hil.run import load_run_config
    from hil.sections import parse_blackbox

    parse_blackbox(task.problem["blackbox"], "problem.blackbox")  # as written: a reseeded seed is checked too
    parse_typed(OBJECTIVES, task.problem["objective"], "problem.objective")
    if "problem" in task.quick:
        q = task.quick["problem"]
        _require(isinstance(q, dict) and "blackbox" in q and "objective" in q, "quick.problem",
                 "expected a mapping with blackbox and objective")
        parse_blackbox(q["blackbox"], "quick.problem.blackbox")
        parse_typed(OBJECTIVES, q["objective"], "quick.problem.objective")
    for name, method in task.methods.items():
        try:
            load_run_config(task.run_config(method, task.seeds[0]))
        except ConfigError as exc:
            text = str(exc)
            # the run config's optimizer/estimator sections are the method's in the task file
            if text.startswith(("optimizer", "estimator")):
                raise ConfigError(f"benchmark {task.name}: methods.{name}.{text}") from None
            raise ConfigError(f"benchmark {task.name}, method {name!r}: {text}") from None


def parse_overrides(items: list[str]) -> dict[str, dict[str, Any]]:
    """``["optimizer.adam_beta1=0.5", "surrogate.k=5"]`` -> ``{"optimizer": {"adam_beta1": 0.5}, ...}``
    (values are read as YAML, so ``[1, 2]``, ``true`` and ``1e-3`` work)."""
    import yaml

    out: dict[str, dict[str, Any]] = {}
    for item in items:
        key, eq, raw = item.partition("=")
        section, dot, name = key.strip().partition(".")
        if not eq or not dot or not name:
            raise ConfigError(f"--set {item!r}: expected SECTION.KEY=VALUE, e.g. optimizer.adam_beta1=0.5")
        if section not in OVERRIDE_SECTIONS:
            raise ConfigError(f"--set {item!r}: unknown section {section!r}; allowed: {', '.join(OVERRIDE_SECTIONS)}")
        try:
            value = yaml.safe_load(raw)
        except yaml.YAMLError as exc:
            raise ConfigError(f"--set {item!r}: the value is not valid YAML: {exc}") from exc
        out.setdefault(section, {})[name] = value
    return out
