"""Subcommands of the ``fv2es`` console script; each module has ``add_arguments`` and ``run``."""
