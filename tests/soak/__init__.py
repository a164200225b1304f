"""A chaos soak of a whole rig: camera nodes, a registry and a controller, each a process, under faults.

:func:`soak.engine.run_soak` starts a registry, N camera nodes (dummy cameras, small images) and a
controller process that captures and downloads over and over into a dataset on a small tmpfs, while
a seeded injector kills and restarts nodes, hangs them (SIGSTOP past the call limits), restarts the
registry, kills the controller in the middle of a download and fills the dataset's disk. Then every
fault is healed, the controller downloads what is still owed, and :mod:`soak.audit` checks that
every image a node stored is in the dataset exactly once with the right bytes, that nothing is owed,
that the manifest is complete and that no spool still holds anything.

``python -m soak --nodes 64 --seconds 600 --seed 7`` runs it from the command line (with ``tests``
on ``PYTHONPATH``); ``tests/soak/test_soak.py`` runs a short one in ``make test`` and the 64-node
one in ``make soak``.
"""
