"""hil.drivers: plug-in layer (installed as ``hil.drivers``); the core never imports it."""
