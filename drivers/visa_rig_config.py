"""The ``visa_rig`` rig's config (:class:`hil.drivers.visa_rig.VisaRig`), importable without torch: the SCPI
command templates are checked here, filled as the rig fills them."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from hil.drivers.rig_config import Float32, RigOptions, check_bounds

from hil.config import Range, check
from hil.registry import BLACKBOXES
from hil.shapes import StaticSpec

#: the most input or output channels one rig may declare
MAX_CHANNELS = 4096


def _template(template: str, key: str, **fields: object) -> str:
    """``template.format(**fields)``, or a :class:`~hil.config.FieldError` naming ``key`` and what is wrong."""
    try:
        return template.format(**fields)
    except (KeyError, IndexError, AttributeError, ValueError, TypeError) as exc:
        error = f"{type(exc).__name__}: {exc}"
    allowed = ", ".join("{" + f + "}" for f in fields)
    check(False, key, f"cannot fill {template!r} with {allowed} ({error}); use only {allowed}, and double a "
                      f"literal brace ({{{{ or }}}})")
    return template


@BLACKBOXES.declare("visa_rig", "hil.drivers.visa_rig:VisaRig")
@dataclass
class VisaRigConfig(RigOptions):
    resource: str = ""
    visa_library: str = "@py"
    n_inputs: Annotated[int, Range(ge=1, le=MAX_CHANNELS)] = 4
    n_outputs: Annotated[int, Range(ge=1, le=MAX_CHANNELS)] = 3
    v_min: Float32 = 0.0
    v_max: Float32 = 3.3
    set_command: str = "SOUR:VOLT:LIST {values}"
    measure_query: str = "MEAS:VOLT:LIST?"
    check_errors: bool = False
    identify_prefix: str = ""
    #: VISA timeouts are whole milliseconds: at least 1 ms (0 ms would be "time out at once")
    timeout_s: Annotated[float, Range(ge=1e-3, le=3600)] = 1.0

    def __post_init__(self) -> None:
        super().__post_init__()
        check(bool(self.resource), "resource", "give the VISA resource, e.g. TCPIP::192.0.2.10::5025::SOCKET or "
                                               "USB0::...::INSTR")
        check_bounds(self.v_min, self.v_max, "v_min", "v_max")
        check("{values}" in self.set_command or "{channel}" in self.set_command, "set_command",
              f"must contain {{values}} or {{channel}} (and {{value}}), got {self.set_command!r}")
        # the templates are filled as _row fills them: a stray {name}, {} or unbalanced brace fails here, not
        # on the first row
        if "{values}" in self.set_command:
            _template(self.set_command, "set_command", values="0.000000,1.000000")
        else:
            one = _template(self.set_command, "set_command", channel=1, value="0.000000")
            two = _template(self.set_command, "set_command", channel=1, value="1.000000")
            check(one != two, "set_command", f"sends the value nowhere: with {{channel}}, give {{value}} too, "
                                             f"got {self.set_command!r}")
        if "{channel}" in self.measure_query:
            _template(self.measure_query, "measure_query", channel=1)

    def static_spec(self) -> StaticSpec:
        """``n_inputs`` volts in, ``n_outputs`` volts out."""
        return StaticSpec(self.n_inputs, (self.n_outputs,))
