"""hil: hardware-in-the-loop training of physical neural networks.

The core (this package) defines the BlackBox interface, gradient estimators,
the physical layer, the optimisation loops, the crash-safe query log, configs
and the CLI. Devices and simulated twins live in the plug-in layers
``hil.drivers`` and ``hil.sim_backends`` and register themselves by name.
"""

__version__ = "0.1.0"
