"""hil.sim_backends: simulated twins that implement the BlackBox interface (installed as ``hil.sim_backends``)."""
