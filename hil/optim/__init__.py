"""Ask/tell optimisers and the one loop that drives them (see :mod:`hil.optim.base`).

The options of the core optimisers are declared in :mod:`hil.optim.configs` (imported to check a config, without
torch); :mod:`hil.optim.builtin` imports the optimisers themselves, which registers them. A new core optimiser is a
module here, its ``Config`` in ``configs.py`` and one import line in ``builtin.py`` (third-party optimisers
register from their own package through the ``hil.plugins`` entry points).

This package's ``__init__`` imports nothing, so checking a config does not import the optimisers.
"""
