"""The ``footprints`` command line.

Subcommands are modules in :mod:`footprints_app.commands`, discovered at start-up:
each defines ``register(subparsers)``, which adds its parser and sets
``handler`` (a function ``(args, beam_args) -> int``) and, for commands that
build a Beam pipeline, ``beam_passthrough=True``. Flags that a pipeline
command does not know are passed through as Beam pipeline options
(``--runner``, ``--direct_num_workers``, ``--project``, ...).

One exact command line: every parser is built with ``allow_abbrev=False``,
so ``--region`` is never taken for ``--region-field``; a flag that is neither
ours nor a registered Beam pipeline option ends the command with exit 2 and a
"did you mean" before anything is read or built (Beam itself would only log
"Discarding unparseable args" and run with the defaults).

Exit codes (:mod:`footprints.errors`): 0 done; 1 the run failed part-way (one
line on stderr; ``--log-level DEBUG`` adds the traceback); 2 nothing ran:
invalid flags or inputs (the message says how to fix them); 3 done, but counts
do not reconcile or a quality gate tripped; 130 interrupted (SIGINT, Ctrl-C); 143
terminated (SIGTERM). An interrupted run leaves its outputs as a kill does: no
summary.json, only temporary names the next run removes.
"""

from __future__ import annotations

import argparse
import atexit
import importlib
import logging
import os
import pkgutil
import signal
import sys
from collections.abc import Sequence

from footprints import __version__
from footprints.errors import (
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_TERMINATED,
    EXIT_USAGE,
    FootprintsError,
    TranslatedNotRun,
)

EPILOG = """\
Pipeline subcommands (prepare, score, segment, demo) accept Beam pipeline
options after their own flags, for example:
  footprints prepare ... --runner DirectRunner --direct_num_workers 2 \\
      --direct_running_mode multi_processing
Flags match exactly (no abbreviations); a flag that is neither the command's
nor a Beam pipeline option stops the command before anything runs.

exit codes:
  0  done: outputs written, counts reconcile, quality gates passed
  1  the run failed part-way (one line on stderr; --log-level DEBUG for the traceback)
  2  nothing ran: invalid flags or inputs (the message says how to fix them)
  3  done, but counts do not reconcile or a quality gate tripped (see the warnings)
  130 interrupted (Ctrl-C); 143 terminated (SIGTERM); no summary.json is left
"""


class ExactArgumentParser(argparse.ArgumentParser):
    """An ArgumentParser that never matches a flag by its prefix.

    Used for the top-level parser and, as ``parser_class`` of the
    subparsers, inherited by every subcommand's parser (and theirs), so no
    command can forget ``allow_abbrev=False``.
    """

    def __init__(self, *args, **kwargs):
        kwargs["allow_abbrev"] = False
        super().__init__(*args, **kwargs)


def _option_strings(parser: argparse.ArgumentParser) -> list[str]:
    return [o for a in parser._actions for o in a.option_strings if o.startswith("--")]


def beam_option_parser() -> argparse.ArgumentParser:
    """One parser holding every Beam pipeline option registered in this process.

    Beam's own ``PipelineOptions.get_all_options`` builds its parser from
    ``PipelineOptions.__subclasses__()``; this walks the subclasses
    recursively, so options classes derived from another (and those
    registered by imported runners) count too.
    """
    from apache_beam.options import pipeline_options

    seen: dict[str, type] = {}
    todo = list(pipeline_options.PipelineOptions.__subclasses__())
    while todo:
        cls = todo.pop(0)
        if str(cls) in seen:
            continue
        seen[str(cls)] = cls
        todo.extend(cls.__subclasses__())
    beam_parser = pipeline_options._BeamArgumentParser(
        prog="footprints (Beam pipeline options)",
        allow_abbrev=False,
        add_help=False,
        conflict_handler="resolve",
    )
    for cls in seen.values():
        cls._add_argparse_args(beam_parser)  # pylint: disable=protected-access
    return beam_parser


def unknown_options(subparser: argparse.ArgumentParser, beam_args: list[str]) -> str | None:
    """Why ``beam_args`` (what our parser left) are not all Beam options, or None.

    Returns:
        ``"unknown option --mask-treshold; did you mean --mask-threshold?"``
        for the first flag that is neither ours nor Beam's, with the closest
        of both as the suggestion.
    """
    import difflib

    beam_parser = beam_option_parser()
    _, left = beam_parser.parse_known_args(beam_args)
    if not left:
        return None
    flag = next((a for a in left if a.startswith("-")), left[0])
    if not flag.startswith("-"):
        return (
            f"unexpected argument {flag!r}: the command takes no positional arguments; "
            "quote globs so the shell does not expand them, e.g. 'tiles/*.tif'"
        )
    name = flag.split("=", 1)[0]
    ours = _option_strings(subparser)
    close = difflib.get_close_matches(name, ours, n=1, cutoff=0.75) or difflib.get_close_matches(
        name, _option_strings(beam_parser), n=1, cutoff=0.75
    )
    hint = (
        f"; did you mean {close[0]}?"
        if close
        else f": neither a flag of {subparser.prog} (see --help) nor a Beam pipeline option"
    )
    return f"unknown option {name}{hint}"


def _subparser(
    parser: argparse.ArgumentParser, args: argparse.Namespace
) -> argparse.ArgumentParser:
    """The parser of the (sub)command that ``args`` came from."""
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return action.choices[args.command]


def parse_command_line(argv: list[str]) -> tuple[argparse.Namespace, list[str]]:
    """Parses a ``footprints`` command line exactly; exits 2 on any unknown flag.

    Returns:
        The parsed flags and the Beam pipeline options (what the command
        passes on to Beam), in their original order.
    """
    parser = build_parser()
    args, unknown = parser.parse_known_args(argv)
    sub = _subparser(parser, args)
    if unknown and not getattr(args, "beam_passthrough", False):
        import difflib

        flag = unknown[0].split("=", 1)[0]
        close = difflib.get_close_matches(flag, _option_strings(sub), n=1, cutoff=0.75)
        parser.error(
            f"unrecognized arguments: {' '.join(unknown)}"
            + (f"; did you mean {close[0]}?" if close else "")
        )
    if unknown:
        problem = unknown_options(sub, unknown)
        if problem:
            sub.error(problem)
    args._inputs = {
        (a.option_strings or [str(a.metavar)])[0]: getattr(args, a.dest)
        for a in sub._actions
        if a.metavar in INPUT_METAVARS and a.dest != "output" and getattr(args, a.dest, None)
    }
    return args, unknown


#: The metavars of flags that name an input (a glob, a folder, a file): what
#: :func:`check_output_first` keeps out of the output a run replaces.
INPUT_METAVARS = frozenset({"GLOB", "DIR", "FILE", "CSV"})


#: Subcommands that own an output location: a folder, or a path prefix (prepare).
OUTPUT_LAYOUTS = {"prepare": "prefix", "score": "folder", "segment": "folder"}


def build_parser() -> argparse.ArgumentParser:
    """The top-level parser with every discovered subcommand."""
    parser = ExactArgumentParser(
        prog="footprints",
        description=(
            "Residential or not, and where, for every building in an area: "
            "Beam pipelines and Keras training over aerial orthophotos."
        ),
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"footprints {__version__}")
    parser.add_argument(
        "--log-level",
        default="WARNING",
        choices=["DEBUG", "INFO", "WARNING", "ERROR"],
        help="logging level (default: %(default)s)",
    )
    subparsers = parser.add_subparsers(
        dest="command", metavar="COMMAND", required=True, parser_class=ExactArgumentParser
    )
    import footprints_app.commands as commands

    for info in sorted(pkgutil.iter_modules(commands.__path__), key=lambda m: m.name):
        if info.name.startswith("_"):
            continue
        module = importlib.import_module(f"footprints_app.commands.{info.name}")
        module.register(subparsers)
    for name, layout in OUTPUT_LAYOUTS.items():
        if layout == "folder":  # a prefix shares its folder: only PREFIX-* is ever touched
            subparsers.choices[name].add_argument(
                "--overwrite",
                action="store_true",
                help="run even if --output holds files no footprints run writes, and "
                "delete them first (what earlier runs wrote is always replaced)",
            )
    return parser


def output_location(args: argparse.Namespace):
    """The :class:`pipeline.writers.files.OutputLocation` a command writes, or None."""
    layout = OUTPUT_LAYOUTS.get(args.command)
    if layout is None or not getattr(args, "output", None):
        return None
    from pipeline.writers.files import OutputLocation

    return OutputLocation(args.output, prefix=layout == "prefix")


def check_output_first(args: argparse.Namespace, beam_args: Sequence[str] = ()):
    """Validates and takes the output before anything runs; returns it and its lock.

    In this order, each before any input is read: the location itself
    (:func:`pipeline.writers.files.check_output`: writable, a real file
    system, names that fit, ``gs://`` credentials), no input inside it (the
    claim would delete it), the run's lock on it (a second run into it stops
    here, exit 2), and with ``--overwrite`` its clearing. A dry run (ours, or
    Beam's ``--dry_run=True`` on Dataflow) takes no lock and deletes nothing.

    Returns:
        ``(location, lock)``; None for either when the command has no output
        or takes no lock. The caller releases the lock when the command ends.
    """
    location = output_location(args)
    if location is None:
        return None, None
    from pipeline.jobs import translate_only
    from pipeline.writers.files import (
        OutputLock,
        check_inputs_outside,
        check_output,
        claim_output,
    )

    overwrite = getattr(args, "overwrite", False)
    translated = translate_only(list(beam_args))
    check_output(location, overwrite=overwrite, translate_only=translated)
    check_inputs_outside(location, getattr(args, "_inputs", {}))
    if getattr(args, "dry_run", False) or translated:
        return location, None
    lock = OutputLock(location)
    lock.acquire()
    try:
        if overwrite:
            claim_output(location, overwrite=True)
    except BaseException:
        lock.release()
        raise
    return location, lock


def resolve_model_dirs(args: argparse.Namespace) -> None:
    """``--model DIR`` / ``--classifier DIR`` where ``DIR/model`` is the SavedModel.

    ``footprints train ... --output DIR`` writes the SavedModel to
    ``DIR/model``; passing ``DIR`` means that model.
    """
    from footprints.contracts import model_dir_of

    if args.command not in OUTPUT_LAYOUTS:
        return
    for flag in ("model", "classifier"):
        if getattr(args, flag, None):
            setattr(args, flag, model_dir_of(getattr(args, flag)))


def print_warnings(summary_path: str) -> None:
    """Prints the ``warnings`` of a finished run's summary.json, one per line."""
    from pipeline.writers.files import read_json

    try:
        warnings = read_json(summary_path).get("warnings") or []
    except (OSError, ValueError):
        return
    for w in warnings:
        print(f"  WARNING [{w.get('code')}]: {w.get('message')}")


def _drop_known_noise(record: logging.LogRecord) -> bool:
    """Drops a Beam 2.77 warning that says nothing to a user.

    Beam's RunInference imports its model manager together with the
    ``resource`` module, and the manager needs PyTorch; without PyTorch the
    import fails, ``resource`` is set to None, and every batch warns that
    memory cannot be measured, on Linux too.
    """
    return "Resource module is not available" not in str(record.msg)


#: The exit code of each signal the CLI turns into an orderly stop (128 + its number).
_SIGNAL_EXITS: dict[int, int] = {
    int(signal.SIGINT): EXIT_INTERRUPTED,
    int(signal.SIGTERM): EXIT_TERMINATED,
}
#: The signals received while :func:`main` ran (nested mains, as the demo's, share it).
_received: list[int] = []


def _stop(signum: int, frame: object) -> None:
    """Signal handler: remember the signal and stop the command where it is."""
    _received.append(signum)
    raise KeyboardInterrupt(signal.Signals(signum).name)


def _install_signal_handlers() -> dict[int, object] | None:
    """SIGINT and SIGTERM stop the command as KeyboardInterrupt; returns the old handlers.

    None off the main thread (Python only installs handlers there) or when
    they are already ours (a nested main).
    """
    try:
        if signal.getsignal(signal.SIGINT) is _stop:
            return None
        return {s: signal.signal(s, _stop) for s in _SIGNAL_EXITS}
    except ValueError:
        return None


def _interrupted(command: str) -> int:
    """The exit code and line of a command stopped by a signal."""
    signum = _received[-1] if _received else signal.SIGINT
    name = signal.Signals(signum).name
    print(
        f"footprints {command}: interrupted ({name}); outputs are left as a kill leaves "
        "them (no summary.json; the next run into the same output replaces them)",
        file=sys.stderr,
    )
    return _SIGNAL_EXITS.get(signum, EXIT_INTERRUPTED)


def main(argv: list[str] | None = None) -> int:
    """Runs the command line; returns the exit code.

    SIGINT and SIGTERM stop the command with 130 and 143 (also when the
    runner wraps the interrupt into an error of its own); the run's output
    lock is released however the command ends.
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    args, unknown = parse_command_line(argv)
    logging.basicConfig(
        level=getattr(logging, args.log_level),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    logging.getLogger().addFilter(_drop_known_noise)
    previous = _install_signal_handlers()
    if previous is not None:
        _received.clear()
    location = lock = None
    try:
        location, lock = check_output_first(args, unknown)
        resolve_model_dirs(args)
        code = int(args.handler(args, unknown) or 0)
        if location is not None and not getattr(args, "dry_run", False):
            print_warnings(location.summary_path)
        return code
    except TranslatedNotRun as exc:
        print(f"footprints {args.command}: {exc}")
        return EXIT_OK
    except FootprintsError as exc:
        if _received:
            return _interrupted(args.command)
        print(f"footprints {args.command}: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        return _interrupted(args.command)
    except Exception as exc:  # a failure during the run: one line, traceback on request
        if _received:  # the runner wrapped the interrupt (RuntimeError: KeyboardInterrupt)
            return _interrupted(args.command)
        logging.getLogger("footprints").debug("traceback", exc_info=True)
        reason = str(exc).strip().splitlines()[-1] if str(exc).strip() else ""
        disk = None
        if location is not None:
            from pipeline.writers.files import no_space_left

            disk = no_space_left(location, exc)
        print(
            f"footprints {args.command}: failed: "
            + (
                f"{disk} ({type(exc).__name__}: {reason[:300]})"
                if disk
                else f"{type(exc).__name__}: {reason}"
            )
            + " (rerun with --log-level DEBUG for the traceback)",
            file=sys.stderr,
        )
        return EXIT_FAILED
    finally:
        if lock is not None:
            lock.release()
        if previous is not None:
            for signum, handler in previous.items():
                signal.signal(signum, handler)  # type: ignore[arg-type]


def console() -> None:
    """The ``footprints`` command: :func:`main`, then an exit without the teardown.

    When a command returns, its outputs are closed and its summary printed;
    what normal interpreter shutdown still does is free TensorFlow's and
    Beam's objects one at a time: 2.8 s after loading a MobileNetV2
    SavedModel, 3.6 s with a Beam pipeline run too (0.15 s with this exit),
    longer than the model takes to score a thousand chips. So the exit
    handlers run (``atexit``: logging, temporary folders, coverage), the
    streams are flushed and the process ends with the command's code.
    Errors that escape :func:`main` (``--help``, argparse's usage errors)
    exit the normal way.
    """
    code = main()
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # a closed pipe or stream: nothing left to say
            pass
    os._exit(code)


if __name__ == "__main__":
    console()
