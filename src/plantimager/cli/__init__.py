"""The ``plantimager`` command line: the group is in :mod:`plantimager.cli.main`, one module a subcommand."""
