"""An example hil plug-in package: what a lab writes to bring its own device model into hil.

:mod:`hil_example_plugin.pendulum` holds a damped-pendulum twin (``type: damped_pendulum``), a rotary-encoder
wrapper (``type: angle_encoder``) and a swing-energy objective (``type: swing_energy``). hil finds them through
the ``hil.plugins`` entry point in this package's ``pyproject.toml``; nothing in hil names this package.
"""

__version__ = "0.1.0"
