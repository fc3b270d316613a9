"""Calibration: the contract a calibration plug-in implements, its record file, and the runner.

The calibrations themselves are plug-ins (``calibration/``, installed as ``hil.calibration``), registered
in :data:`hil.registry.CALIBRATIONS`; this package never imports them.
"""
