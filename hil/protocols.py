"""The plug-in contracts in one place: what a lab writes to extend hil, as typed :class:`typing.Protocol` s.

hil is extended with **BlackBoxes** (devices, rigs, twins), **wrappers** (a BlackBox around a BlackBox),
**objectives**, **gradient estimators**, **ask/tell optimisers** and **calibrations**. Every one of them is
a *plug-in*: a class with

1. a nested ``Config`` dataclass of its options, each numeric field declaring its range at the field with
   :class:`hil.config.Range` or an alias (``PositiveFloat``, ``UnitFloat``, ``NonNegativeInt``, ``FiniteFloat``,
   ...; see :mod:`hil.config`)::

       @dataclass
       class Config:
           length_m: PositiveFloat = 1.0                       # > 0, finite
           damping: Annotated[float, Range(ge=0, le=10)] = 0.1
           steps: Annotated[int, Range(ge=1, le=10_000)] = 50
           out_of_bounds: Literal["reject", "clip"] = "reject"  # strings, bools, Literals need no range

   :func:`hil.config.undeclared_numbers` lists the numbers that declare none (the conformance kit requires
   it to be empty). Checks between fields go in ``__post_init__`` with :func:`hil.config.check`, which names
   the field; :func:`hil.config.parse` validates a YAML section into ``Config`` and names the key of any error;
2. a ``from_config`` classmethod building it from a parsed ``Config`` (its keyword arguments depend on the
   kind: see each protocol below); it does no I/O;
3. the registry decorator of its kind (:data:`PLUGIN_KINDS`), e.g. ``@BLACKBOXES.register("damped_pendulum")``:
   a config then says ``type: damped_pendulum``. Names are global and a name registered twice is an error;
4. an entry point in the ``hil.plugins`` group of the package that holds it, naming the module whose import
   runs the decorators (hil imports it the first time a registry is asked for a name it does not know)::

       [project.entry-points."hil.plugins"]
       my_lab = "my_lab_hil.plugins"

   Optionally, an entry point per type in the ``hil.types`` group (``"blackbox:damped_pendulum" =
   "my_lab_hil.plugins"``, the registry's ``key`` before the colon) lets a config that names the type import
   that module alone. The core never imports a plug-in by name (an import-linter contract in hil's
   ``pyproject.toml``).

   To have a config checked without importing the implementation (or torch), declare the ``Config`` in a
   torch-free module with ``@BLACKBOXES.declare("damped_pendulum", "my_lab_hil.pendulum:DampedPendulum")``,
   point the ``hil.types`` entry point at that module and set ``Config = PendulumConfig`` on the class; the
   optional shape methods of :mod:`hil.shapes` (``static_spec``, ``check_output_shape``) let ``hil validate``
   check it without building anything.

The protocols below say what each kind must have. Implementations subclass the base classes re-exported
here (:class:`BlackBox`, :class:`BlackBoxWrapper`, :class:`Objective`, :class:`GradientEstimator`,
:class:`Optimizer`, :class:`Calibration`), which provide the validated, logged paths and the defaults; the
protocols spell out the part the implementer writes. :mod:`hil.testing.conformance` holds a pytest mixin per
kind that checks an implementation against its contract in one or two lines; ``examples/hil-example-plugin``
in hil's repository is a complete third-party plug-in package.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Literal, Protocol, runtime_checkable

import torch

from hil.blackbox import (
    PURPOSES,
    BlackBox,
    BlackBoxSpec,
    BlackBoxWrapper,
    Differentiable,
    QueryLogLike,
    SupportsQuery,
    find_attribute,
)
from hil.calib.base import Calibration, CalibrationContext, CalibrationResult, CalibrationSession, find_control
from hil.config import Range, check, parse, undeclared_numbers
from hil.errors import (
    CalibrationError,
    ConfigError,
    DeviceError,
    EstimatorError,
    HilError,
    InputError,
    NotConnectedError,
    OptimizerError,
    PartialAnswerError,
)
from hil.estimators import GradientEstimator
from hil.objectives import Objective
from hil.optim.base import Ask, Optimizer, make_ask
from hil.registry import (
    BENCHMARKS,
    BLACKBOXES,
    CALIBRATIONS,
    ESTIMATORS,
    GENERATIVE_MODELS,
    OBJECTIVES,
    OPTIMIZERS,
    PLUGIN_GROUP,
    SIMULATORS,
    TWIN_MODELS,
    WRAPPERS,
    Registry,
)

__all__ = [
    # the contracts
    "Configurable", "BlackBoxImplementation", "WrapperImplementation", "ObjectiveImplementation",
    "EstimatorImplementation", "ExpectedGradient", "OptimizerImplementation", "CalibrationImplementation",
    "SimulatedCounterpart", "Benchmark", "TwinModelFactory",
    # optional capabilities a BlackBox may declare
    "Differentiable", "ImageInputs", "DeclaresOptimum", "KnowsItsExpectation", "ExposureControl", "SettleControl",
    # the kinds and where they register
    "PluginKind", "PLUGIN_KINDS", "PLUGIN_GROUP", "FUNCTION_REGISTRIES", "registered", "protocol_members",
    "missing_members",
    # re-exported base classes and helpers
    "BlackBox", "BlackBoxSpec", "BlackBoxWrapper", "SupportsQuery", "QueryLogLike", "PURPOSES", "find_attribute",
    "Objective", "GradientEstimator", "Optimizer", "Ask", "make_ask", "Calibration", "CalibrationContext",
    "CalibrationResult", "CalibrationSession", "find_control", "Range", "check", "parse", "undeclared_numbers",
    "Registry", "HilError", "ConfigError", "InputError", "DeviceError", "PartialAnswerError", "NotConnectedError",
    "EstimatorError", "OptimizerError", "CalibrationError",
]


# -- the plug-in contract shared by every kind ---------------------------------------------------------------


@runtime_checkable
class Configurable(Protocol):
    """Every plug-in: a nested ``Config`` dataclass and a ``from_config`` classmethod.

    ``Config``: a :func:`dataclasses.dataclass` whose fields are the options a YAML section may give
    (``type:`` is the registry's, not a field). Every field has a default unless the section must give it;
    every ``int`` / ``float`` field (alone, optional or in a list) declares a :class:`hil.config.Range`
    (``Annotated[float, Range(gt=0)]`` or an alias); a float is finite unless its range says ``finite=False``.
    ``from_config(config, **kind_specific)``: the instance, built from a validated ``Config``, without I/O
    (a device is opened by ``connect``, never by a constructor).
    """

    Config: ClassVar[type]

    @classmethod
    def from_config(cls, config: Any, /, **kwargs: Any) -> Any: ...


# -- BlackBoxes and wrappers -------------------------------------------------------------------------------


@runtime_checkable
class BlackBoxImplementation(Protocol):
    """A device, rig or twin: subclass :class:`hil.blackbox.BlackBox`, register in :data:`~hil.registry.BLACKBOXES`.

    **Spec.** The constructor calls ``super().__init__(BlackBoxSpec(...))`` and does nothing that can block or
    fail for want of a device (no port, socket, file or simulator is opened there). The spec
    (:class:`hil.blackbox.BlackBoxSpec`) is fixed for the box's life (the query log is created from it before
    ``connect``):

    * ``name``: a label for messages and logs (e.g. ``"serial_board(/dev/ttyACM0)"``);
    * ``input_dim``: ``d_in``, the number of inputs of one query row;
    * ``lower`` / ``upper``: inclusive, finite bounds, ``d_in`` values each, or one scalar that broadcasts to
      every input; ``lower < upper`` everywhere. Nothing outside them ever reaches ``_query``;
    * ``output_shape``: the shape of one answer (``(3,)`` for three voltages, ``(32, 32)`` for an image);
    * ``out_of_bounds``: ``"reject"`` (an input outside the bounds raises :class:`~hil.errors.InputError` and
      nothing is sent) or ``"clip"`` (it is clipped to the bounds, counted in ``stats.clipped_rows``);
    * ``stochastic``: whether the same input may give a different answer (noise); a box declared
      deterministic answers the same input the same way;
    * ``output_dtype``: the dtype of the answers (float32 by default), which is the log's ``y`` column;
    * ``scale`` (``"linear"`` / ``"log"``) and ``integer``, per input or one value for all: how optimisers'
      unit cube maps to physical values (:mod:`hil.space`). ``log`` needs positive bounds, ``integer``
      whole-number bounds.

    **What the implementer writes.** Only the private methods below; the public ``query(x, *, purpose,
    iteration, start)`` of the base class validates dtype, shape, finiteness, bounds and the log metadata
    *before* ``_query`` sees anything, applies the out-of-bounds policy, times the call, checks the answer's
    shape, counts it (``stats``) and appends it to the attached query log, once.

    Optional capabilities (:class:`Differentiable`, :class:`ImageInputs`, :class:`DeclaresOptimum`,
    :class:`KnowsItsExpectation`, :class:`ExposureControl`, :class:`SettleControl`) are looked up by name,
    through wrappers (:func:`hil.blackbox.find_attribute`, :func:`hil.calib.base.find_control`).
    """

    spec: BlackBoxSpec
    Config: ClassVar[type]

    @classmethod
    def from_config(cls, config: Any) -> BlackBoxImplementation:
        """The box from its validated ``Config``; no I/O."""
        ...

    def _query(self, x: torch.Tensor) -> torch.Tensor:
        """``x``: ``batch x d_in`` float32 on the CPU, contiguous, finite and inside the bounds (already clipped
        under ``clip``). Returns ``batch x *output_shape`` (a tensor or anything ``torch.as_tensor`` takes), one
        row per input row, in order. An invalid *measurement* of a row (a design that does not simulate) may be
        a row of NaN; a device that fails raises :class:`~hil.errors.DeviceError`, or
        :class:`~hil.errors.PartialAnswerError` carrying the rows it did answer (they are logged, then the error
        propagates). Never called before ``_connect``."""
        ...

    def _connect(self) -> None:
        """Open the device / start the simulator (called by ``connect()`` / ``with``, once per connection:
        ``connect`` on a connected box does nothing). The base class does nothing here."""
        ...

    def _close(self) -> None:
        """Release what ``_connect`` opened (called by ``close()`` / leaving ``with``, once: ``close`` on a
        closed box does nothing). After ``_close``, ``_connect`` may be called again (a reconnect)."""
        ...


@runtime_checkable
class WrapperImplementation(Protocol):
    """A BlackBox around a BlackBox (a bench imperfection, a correction, latency): subclass
    :class:`hil.blackbox.BlackBoxWrapper`, register in :data:`~hil.registry.WRAPPERS`; a config lists it under
    ``blackbox.wrappers`` (innermost first)::

        @WRAPPERS.register("encoder")
        class Encoder(BlackBoxWrapper):
            @dataclass
            class Config:
                counts_per_rev: Annotated[int, Range(ge=2, le=2**24)] = 4096

            @classmethod
            def from_config(cls, config, *, inner):
                return cls(inner, config.counts_per_rev)

            def _query(self, x):
                return quantise(self.inner._query(x))    # the inner box's *private* path

    ``inner``: the wrapped box; ``spec``: ``inner.spec`` or a copy with what the wrapper changes
    (``dataclasses.replace(inner.spec, stochastic=True, output_shape=...)``). The wrapper is the box that is
    queried and logged: it calls ``self.inner._query`` (never ``inner.query``, which would validate and log the
    row a second time), and connecting / closing it connects / closes the inner box (the base class does).
    An output shape it changes, it declares. ``forward_differentiable`` (when the inner box has one) is the
    noise-free model of the wrapper's physics, so that ``estimator: {type: exact}`` sees the same map.
    """

    inner: BlackBox
    spec: BlackBoxSpec
    Config: ClassVar[type]

    @classmethod
    def from_config(cls, config: Any, *, inner: BlackBox) -> WrapperImplementation:
        """The wrapper around ``inner`` (built, not necessarily connected); no I/O."""
        ...

    def _query(self, x: torch.Tensor) -> torch.Tensor: ...


@runtime_checkable
class ImageInputs(Protocol):
    """A box whose inputs are an image (an SLM's pixels or macro-pixels): ``rows * cols == input_dim``. Used
    by reports (the best input drawn as an image) and image calibrations (``slm_phase``, ``twin_fit``)."""

    input_image_shape: tuple[int, int]


@runtime_checkable
class DeclaresOptimum(Protocol):
    """A problem with a known optimum (a benchmark or conformance problem): ``optimum()`` is a ``d_in`` point
    where the paired objective reaches ``optimum_value``."""

    optimum_value: float

    def optimum(self) -> torch.Tensor | None: ...


@runtime_checkable
class KnowsItsExpectation(Protocol):
    """A stochastic problem that computes its expected objective deterministically (benchmarks' ``score:
    expected``): ``batch x d_in`` -> ``batch``."""

    def expected_objective(self, x: torch.Tensor) -> torch.Tensor: ...


@runtime_checkable
class ExposureControl(Protocol):
    """A camera whose exposure a calibration may set (``camera``): found through wrappers by
    :func:`hil.calib.base.find_control`. ``exposure_bounds_s``: ``(lowest, highest)`` in seconds."""

    exposure_bounds_s: tuple[float, float]

    def get_exposure_s(self) -> float: ...

    def set_exposure_s(self, seconds: float) -> None: ...


@runtime_checkable
class SettleControl(Protocol):
    """A rig whose settle time (the wait between displaying a pattern and grabbing a frame) a calibration may
    set (``settle``)."""

    def get_settle_s(self) -> float: ...

    def set_settle_s(self, seconds: float) -> None: ...


# -- objectives ---------------------------------------------------------------------------------------------


@runtime_checkable
class ObjectiveImplementation(Protocol):
    """A differentiable map from measured answers to one number per row: subclass :class:`hil.objectives.Objective`,
    register in :data:`~hil.registry.OBJECTIVES`.

    ``from_config(config, *, output_shape)``: the objective for a box answering ``output_shape`` (a config's
    ``objective:`` section cannot see the box when it is parsed, so a mismatch with the box is a
    :class:`~hil.errors.ConfigError` raised here). ``sense``: ``"min"`` or ``"max"``, which is better.
    ``__call__(y)``: ``batch x *output_shape`` -> ``batch`` values, differentiable in ``y`` with torch ops
    (the gradient optimisers back-propagate ``loss(y)`` into the answers, so only ``dy/dx`` is estimated);
    a row of NaN (an invalid measurement) gives NaN. The base class derives ``loss`` (the value to minimise)
    and ``better``.
    """

    sense: Literal["min", "max"]
    Config: ClassVar[type]

    @classmethod
    def from_config(cls, config: Any, *, output_shape: tuple[int, ...]) -> ObjectiveImplementation: ...

    def __call__(self, y: torch.Tensor) -> torch.Tensor: ...

    def loss(self, y: torch.Tensor) -> torch.Tensor: ...


# -- gradient estimators --------------------------------------------------------------------------------------


@runtime_checkable
class EstimatorImplementation(Protocol):
    """The backward pass of a physical layer: subclass :class:`hil.estimators.GradientEstimator`, register in
    :data:`~hil.registry.ESTIMATORS`; ``from_config(config)``.

    * ``bind(blackbox)`` once, before anything else, returns ``self``. The box may be the physical one (a
      :class:`~hil.layer.PhysicalLayer`) or an optimiser's unit-cube view of it (:class:`hil.space.UnitCubeView`):
      work in whatever coordinates the bound box takes.
    * ``observe(x, y, scores=None)``: measured pairs (``batch x d_in``, ``batch x *output_shape``), and when the
      caller has an objective, each row's value to minimise (``batch``). Rows of NaN are invalid measurements.
      Default: ignored.
    * ``vjp(x, y, grad_y, *, iteration=-1, start=None)``: ``J_F(x)^T grad_y`` at the points ``x`` (``batch x
      d_in``) with their measured ``y`` and the cotangents ``grad_y`` (``batch x *output_shape``); returns
      ``batch x d_in`` float32, finite. ``iteration`` and ``start`` (``batch`` starting-point indices or None)
      label any probe query in the log. An estimator that needs data and has none raises
      :class:`~hil.errors.EstimatorError`.
    * ``probes_per_point``: the queries ``vjp`` (or ``objective_gradient``) makes per row of ``x``, known after
      ``bind``; optimisers reserve them in their budgets. Probes go through ``self.blackbox.query`` (validated,
      logged) with ``purpose="probe"`` (or ``"local_sample"``), ``iteration`` and ``start`` passed on.
    * ``overlaps_measurement`` and ``while_measuring()`` (work that overlaps the next measurement: when the
      attribute is true, the loop measures in a worker thread and calls ``while_measuring`` in its own, which
      returns when the work is done), ``close()`` (stop threads), ``state_summary()`` (a few numbers for the
      progress line): defaults do nothing.

    An estimator that models the answers' distribution may also give ``objective_gradient`` (:class:`ExpectedGradient`).
    """

    probes_per_point: int
    Config: ClassVar[type]

    @classmethod
    def from_config(cls, config: Any) -> EstimatorImplementation: ...

    def bind(self, blackbox: BlackBox) -> EstimatorImplementation: ...

    def observe(self, x: torch.Tensor, y: torch.Tensor, scores: torch.Tensor | None = None) -> None: ...

    def vjp(self, x: torch.Tensor, y: torch.Tensor, grad_y: torch.Tensor, *, iteration: int = -1,
            start: torch.Tensor | None = None) -> torch.Tensor: ...

    def while_measuring(self) -> None: ...

    def close(self) -> None: ...

    def state_summary(self) -> dict[str, Any]: ...


@runtime_checkable
class ExpectedGradient(Protocol):
    """Optional on an estimator: ``objective_gradient(x, loss, *, iteration=-1, start=None)``, the gradient of
    the *expected* loss ``d/dx E[loss(F(x))]`` at each row of ``x`` (``batch x d_in``); ``loss`` maps ``m x
    *output_shape`` answers to ``m`` values. When present the ``gradient`` optimiser uses it instead of ``vjp``
    on one measured answer."""

    def objective_gradient(self, x: torch.Tensor, loss: Callable[[torch.Tensor], torch.Tensor], *,
                           iteration: int = -1, start: torch.Tensor | None = None) -> torch.Tensor: ...


# -- optimisers ------------------------------------------------------------------------------------------------


@runtime_checkable
class OptimizerImplementation(Protocol):
    """An ask/tell optimiser (:mod:`hil.optim.base`): subclass :class:`hil.optim.base.Optimizer`, register in
    :data:`~hil.registry.OPTIMIZERS`.

    ``from_config(config, *, box, objective, estimator, seed, budget)``: ``box`` is the unit-cube view of the
    BlackBox (:class:`hil.space.UnitCubeView`: inputs in ``[0, 1]^d``); ``estimator`` an unbound
    :class:`GradientEstimator` (the optimiser binds it to ``box``) or None; ``seed`` seeds every random draw it
    makes; ``budget`` the run's total query budget or None. The optimiser never
    queries ``box`` itself (the loop does), except an estimator's probes inside ``tell``, declared in advance
    as ``Ask.extra_queries``.

    * ``ask(iteration, max_queries)``: an :class:`hil.optim.base.Ask` (``n x d`` points in the unit cube, one
      purpose and one start index per row) costing at most ``max_queries`` (``None``: no limit), or ``None``
      when nothing more fits or it has finished;
    * ``tell(asked, y, value)``: the answers (``n x *output_shape``) and their objective values (``n``; NaN
      for an invalid measurement). Deterministic given the config and seed: a killed run is resumed by
      replaying the log through ``tell`` and must ask the same queries again;
    * ``uses_gradient``: whether it takes an ``estimator:`` section; ``estimator_types`` (optional): the
      estimator types it accepts; ``n_starts``: independent searches whose bests the trace keeps;
    * optional ``recommend()``: ``n_starts x d`` points in the unit cube, what each start would return now.
    """

    uses_gradient: ClassVar[bool]
    n_starts: int
    Config: ClassVar[type]

    @classmethod
    def from_config(cls, config: Any, *, box: Any, objective: Objective, estimator: GradientEstimator | None,
                    seed: int, budget: int | None) -> OptimizerImplementation: ...

    def ask(self, iteration: int, max_queries: int | None) -> Ask | None: ...

    def tell(self, asked: Ask, y: torch.Tensor, value: torch.Tensor) -> None: ...

    def state_summary(self) -> dict[str, Any]: ...

    def while_measuring(self) -> None: ...

    def close(self) -> None: ...


# -- calibrations ----------------------------------------------------------------------------------------------


@runtime_checkable
class CalibrationImplementation(Protocol):
    """A calibration (:mod:`hil.calib.base`): subclass :class:`hil.calib.base.Calibration`, register in
    :data:`~hil.registry.CALIBRATIONS`; ``hil calibrate NAME --rig CONFIG`` runs it (:mod:`hil.calib.runner`).

    ``name``, ``order`` (``hil calibrate all`` runs by increasing order), ``summary`` (one line for ``hil
    calibrate list``); ``Config``: its options (``--option key=value``, a config's ``calibrate.NAME``);
    ``from_config(config)``.

    * ``missing(rig, context)``: what the rig lacks for it, as a sentence, or None; called on the built,
      unconnected rig before any query (a refused calibration queries nothing);
    * ``query_box(rig)``: the box it queries on the connected rig (the rig, or a view of the same devices);
    * ``measure(session)``: queries only through ``session.query`` (validated, logged with purpose
      ``calibration``), returns a :class:`hil.calib.base.CalibrationResult` whose values are JSON (finite
      numbers, strings, lists, mappings). ``corrections`` say how the record changes the rig section
      (``set`` an option of the rig or of a wrapper, append ``wrappers``), and must leave a section that
      validates; files it writes go in ``session.context.out_dir`` and are named in ``files``;
    * ``plot(result, path)``: a PNG of what was measured and fitted, or None.

    The runner writes the record (:mod:`hil.calib.record`: checksummed, tied to the rig section's
    fingerprint), the plot and the query log.
    """

    name: ClassVar[str]
    order: ClassVar[int]
    summary: ClassVar[str]
    Config: ClassVar[type]

    @classmethod
    def from_config(cls, config: Any) -> CalibrationImplementation: ...

    def missing(self, rig: BlackBox, context: CalibrationContext) -> str | None: ...

    def query_box(self, rig: BlackBox) -> BlackBox: ...

    def measure(self, session: CalibrationSession) -> CalibrationResult: ...

    def plot(self, result: CalibrationResult, path: Path) -> Path | None: ...


# -- the smaller registries: functions, not classes --------------------------------------------------------


class SimulatedCounterpart(Protocol):
    """:data:`~hil.registry.SIMULATORS`, by rig type: ``fn(section) -> context manager`` that starts the rig's
    simulated device, yields the section rewritten to reach it, and stops the device on exit whatever happens
    (``hil run CONFIG --dry-run``, :func:`hil.dryrun.dry_run`)."""

    def __call__(self, section: dict[str, Any]) -> AbstractContextManager[dict[str, Any]]: ...


class Benchmark(Protocol):
    """:data:`~hil.registry.BENCHMARKS`: ``fn(json_path, quick) -> exit code``, run by ``hil bench NAME``."""

    def __call__(self, json_path: str | None, quick: bool) -> int: ...


class TwinModelFactory(Protocol):
    """:data:`~hil.registry.TWIN_MODELS`, by twin type: ``fn(section, fit=None) -> torch.nn.Module`` with
    ``forward(x)``, ``values()`` and ``fitted_section()``: a twin differentiable in its physical parameters, for
    ``hil calibrate twin_fit``."""

    def __call__(self, section: Mapping[str, Any], fit: tuple[str, ...] | None = None) -> torch.nn.Module: ...


# -- the kinds ----------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PluginKind:
    """One kind of plug-in: where it registers, what it implements, what it subclasses, and the keyword
    arguments of its ``from_config`` beyond the config."""

    name: str
    registry: Registry
    protocol: type
    base: type | None
    from_config_kwargs: tuple[str, ...] = ()


#: Every kind of class plug-in, by the name the conformance kit uses (``hil.testing.conformance``).
PLUGIN_KINDS: dict[str, PluginKind] = {
    "blackbox": PluginKind("blackbox", BLACKBOXES, BlackBoxImplementation, BlackBox),
    "wrapper": PluginKind("wrapper", WRAPPERS, WrapperImplementation, BlackBoxWrapper, ("inner",)),
    "objective": PluginKind("objective", OBJECTIVES, ObjectiveImplementation, Objective, ("output_shape",)),
    "estimator": PluginKind("estimator", ESTIMATORS, EstimatorImplementation, GradientEstimator),
    "optimizer": PluginKind("optimizer", OPTIMIZERS, OptimizerImplementation, Optimizer,
                            ("box", "objective", "estimator", "seed", "budget")),
    "calibration": PluginKind("calibration", CALIBRATIONS, CalibrationImplementation, Calibration),
}

#: The function registries, with their protocols.
FUNCTION_REGISTRIES: dict[str, tuple[Registry, type]] = {
    "simulator": (SIMULATORS, SimulatedCounterpart),
    "benchmark": (BENCHMARKS, Benchmark),
    "twin_model": (TWIN_MODELS, TwinModelFactory),
    "generative_model": (GENERATIVE_MODELS, object),
}


def registered(kind: str, package: str | None = None) -> Iterator[tuple[str, Any]]:
    """``(name, implementation)`` of every registered plug-in of ``kind`` (``PLUGIN_KINDS``), loading the
    ``hil.plugins`` entry points first; ``package``: only those defined in that package (``"hil"``,
    ``"my_lab_hil"``) or its subpackages."""
    reg = PLUGIN_KINDS[kind].registry
    for name in reg.names():
        obj = reg.get(name)
        module = getattr(obj, "__module__", "") or ""
        if package is None or module == package or module.startswith(package + "."):
            yield name, obj


def protocol_members(proto: type) -> list[str]:
    """The names a protocol of this module requires (attributes, methods, ``__call__``)."""
    names: set[str] = set()
    for klass in proto.__mro__:
        if klass in (object, Protocol) or not getattr(klass, "_is_protocol", False):
            continue
        names.update(getattr(klass, "__annotations__", {}))
        for name, value in vars(klass).items():
            if (not name.startswith("__") or name == "__call__") and (callable(value)
                                                                      or isinstance(value, classmethod)):
                names.add(name)
    return sorted(names)


def missing_members(obj: Any, proto: type) -> list[str]:
    """What ``obj`` lacks of ``proto``: for an instance, every member; for a class, its methods and class-level
    attributes (``ClassVar`` s and attributes with a class default), since instance attributes (``spec``,
    ``inner``) only exist once it is built."""
    if not isinstance(obj, type):
        return [n for n in protocol_members(proto) if not hasattr(obj, n)]
    instance_only = set()
    for klass in proto.__mro__:
        for name, annotation in getattr(klass, "__annotations__", {}).items():
            if not str(annotation).startswith("ClassVar"):
                instance_only.add(name)
    return [n for n in protocol_members(proto) if not hasattr(obj, n) and n not in instance_only]
