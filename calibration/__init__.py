"""hil.calibration: plug-in layer (installed as ``hil.calibration``); the core never imports it."""
