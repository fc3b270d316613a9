"""Op-amp figures from an open-loop AC response: DC gain, unity-gain bandwidth, phase margin, FoM.

Pure numpy, so it is tested without a simulator. A design is *invalid* (NaN
figures, ``valid = False``, a reason) when the response is not finite, when
the gain never crosses 0 dB, or when it is below 0 dB from the start.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

#: FoM weights (CktGNN): 1.2 |gain_dB| / 100 + 1.6 PM / 90 + 10 UGBW / 1e9. CktGNN divides PM by -90,
#: which rewards unstable designs (negative margins); we use +90 so that stable designs score higher, and
#: count PM only up to 90 degrees: uncapped, the best "op-amps" random search finds are circuits with ~0.1 dB
#: of gain that cross 0 dB at once with a "margin" of 165-170 degrees (FoM ~3.0, above every real amplifier).
PM_CAP_DEG = 90.0
FOM_GAIN_PER_DB = 1.2 / 100
FOM_PM_PER_DEG = 1.6 / 90
FOM_UGBW_PER_HZ = 10 / 1e9

FIELDS = ("valid", "gain_db", "ugbw_hz", "phase_margin_deg", "fom")


@dataclass(frozen=True)
class OpAmpFigures:
    valid: bool
    gain_db: float
    ugbw_hz: float
    phase_margin_deg: float
    fom: float
    reason: str = ""

    def as_row(self) -> list[float]:
        """``[valid, gain_db, ugbw_hz, phase_margin_deg, fom]`` as floats (NaN for an invalid design)."""
        return [float(self.valid), self.gain_db, self.ugbw_hz, self.phase_margin_deg, self.fom]


def invalid(reason: str) -> OpAmpFigures:
    nan = math.nan
    return OpAmpFigures(False, nan, nan, nan, nan, reason)


def fom(gain_db: float, ugbw_hz: float, phase_margin_deg: float) -> float:
    pm = min(phase_margin_deg, PM_CAP_DEG)
    return FOM_GAIN_PER_DB * abs(gain_db) + FOM_PM_PER_DEG * pm + FOM_UGBW_PER_HZ * ugbw_hz


def measure(freq_hz: np.ndarray, response: np.ndarray) -> OpAmpFigures:
    """Figures of an open-loop response ``response`` (complex, ``n``) at ``freq_hz`` (``n``, increasing).

    Gain: ``|H|`` in dB at the lowest frequency. UGBW: the first 0 dB crossing,
    interpolated linearly in (log f, dB). Phase margin: 180° plus the phase at
    the UGBW, the phase unwrapped from the lowest frequency (so a response that
    starts at 0° and rolls off through -180° has a negative margin),
    interpolated the same way.
    """
    f = np.asarray(freq_hz, dtype=np.float64)
    h = np.asarray(response, dtype=np.complex128)
    if f.ndim != 1 or f.shape != h.shape or len(f) < 2:
        return invalid(f"expected two equal 1-D vectors of >= 2 points, got {f.shape} and {h.shape}")
    if not (np.all(np.isfinite(f)) and np.all(np.isfinite(h))) or np.any(h == 0):
        return invalid("the simulator returned a non-finite or zero response")
    mag_db = 20 * np.log10(np.abs(h))
    phase_deg = np.degrees(np.unwrap(np.angle(h)))
    phase_deg -= 360 * np.round(phase_deg[0] / 360)  # start within (-180, 180]
    gain_db = float(mag_db[0])
    if gain_db <= 0:
        return invalid(f"no gain: {gain_db:.1f} dB at {f[0]:.3g} Hz")
    below = np.nonzero(mag_db <= 0)[0]
    if len(below) == 0:
        return invalid(f"never crosses 0 dB below {f[-1]:.3g} Hz")
    i = int(below[0])
    lf = np.log10(f[i - 1: i + 1])
    t = mag_db[i - 1] / (mag_db[i - 1] - mag_db[i])
    ugbw = float(10 ** (lf[0] + t * (lf[1] - lf[0])))
    phase_at = float(phase_deg[i - 1] + t * (phase_deg[i] - phase_deg[i - 1]))
    pm = 180.0 + phase_at
    return OpAmpFigures(True, gain_db, ugbw, pm, fom(gain_db, ugbw, pm))
