"""Subcommands of the ``footprints`` command line, one module each.

Each module defines ``register(subparsers)``; :mod:`footprints_app.cli` finds
them here, so a new subcommand is a new module and nothing else changes.
"""
