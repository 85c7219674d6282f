"""The ``footprints`` command line.

Subcommands are modules in :mod:`footprints.commands`, discovered at start-up:
each defines ``register(subparsers)``, which adds its parser and sets
``handler`` (a function ``(args, beam_args) -> int``) and, for commands that
build a Beam pipeline, ``beam_passthrough=True``. Flags that a pipeline
command does not know are passed through as Beam pipeline options
(``--runner``, ``--direct_num_workers``, ``--project``, ...).

Exit codes: 0 success; 2 invalid flags or inputs (the message says how to fix
them; nothing ran); 1 a failure during the run, or counts that do not
reconcile (one line on stderr; ``--log-level DEBUG`` adds the traceback);
130 interrupted.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import pkgutil
import sys

from footprints import __version__
from footprints.errors import FootprintsError

EPILOG = """\
Pipeline subcommands (prepare, score, segment, demo) accept Beam pipeline
options after their own flags, for example:
  footprints prepare ... --runner DirectRunner --direct_num_workers 2 \\
      --direct_running_mode multi_processing
"""


def build_parser() -> argparse.ArgumentParser:
    """The top-level parser with every discovered subcommand."""
    parser = argparse.ArgumentParser(
        prog="footprints",
        description=(
            "Residential or not, and where, for every building in an area: "
            "Beam pipelines and Keras training over aerial orthophotos."),
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"footprints {__version__}")
    parser.add_argument("--log-level", default="WARNING",
                        choices=["DEBUG", "INFO", "WARNING", "ERROR"],
                        help="logging level (default: %(default)s)")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    import footprints.commands as commands

    for info in sorted(pkgutil.iter_modules(commands.__path__), key=lambda m: m.name):
        if info.name.startswith("_"):
            continue
        module = importlib.import_module(f"footprints.commands.{info.name}")
        module.register(subparsers)
    return parser


def _drop_known_noise(record: logging.LogRecord) -> bool:
    """Drops a Beam 2.77 warning that says nothing to a user.

    Beam's RunInference imports its model manager together with the
    ``resource`` module, and the manager needs PyTorch; without PyTorch the
    import fails, ``resource`` is set to None, and every batch warns that
    memory cannot be measured, on Linux too.
    """
    return "Resource module is not available" not in str(record.msg)


def main(argv: list[str] | None = None) -> int:
    """Runs the command line; returns the exit code."""
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    args, unknown = parser.parse_known_args(argv)
    if unknown and not getattr(args, "beam_passthrough", False):
        parser.error(f"unrecognized arguments: {' '.join(unknown)}")
    logging.basicConfig(level=getattr(logging, args.log_level),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger().addFilter(_drop_known_noise)
    try:
        return int(args.handler(args, unknown) or 0)
    except FootprintsError as exc:
        print(f"footprints {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"footprints {args.command}: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # a failure during the run: one line, traceback on request
        logging.getLogger("footprints").debug("traceback", exc_info=True)
        reason = str(exc).strip().splitlines()[-1] if str(exc).strip() else ""
        print(f"footprints {args.command}: failed: {type(exc).__name__}: {reason} "
              "(rerun with --log-level DEBUG for the traceback)", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
