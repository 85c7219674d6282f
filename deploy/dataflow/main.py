"""Flex Template entry point: template parameters in, ``footprints score|segment`` out.

Dataflow's Python template launcher runs this file in the worker image with
every template parameter and the job's pipeline options as ``--name=value``
flags. Parameter names follow Dataflow's style (``residential_fraction``);
the ``footprints`` command's flags are hyphenated (``--residential-fraction``)
and its switches take no value (``--csv``). :func:`to_cli_args` maps one to
the other using the command's own parser, so a flag added to ``footprints``
needs only a line in the template metadata, and everything that is not a
``footprints`` flag (``--runner``, ``--project``, ``--sdk_container_image``,
...) passes through as a Beam pipeline option, as it does on the command line.

The job is ``score`` when ``--chips`` is given and ``segment`` when
``--raster`` is: each template's metadata requires its own, so one image
serves both templates without a parameter that users could get wrong.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

#: The parameter that identifies each job (required in its metadata).
JOB_BY_PARAMETER = {"chips": "score", "raster": "segment"}
TRUE = {"true", "1", "yes"}
FALSE = {"false", "0", "no", ""}


def _subparser(job: str) -> argparse.ArgumentParser:
    from footprints_app import cli

    parser = cli.build_parser()
    for action in parser._subparsers._group_actions:  # argparse keeps subparsers here
        if job in action.choices:
            return action.choices[job]
    raise KeyError(job)


def job_of(argv: Sequence[str]) -> str:
    """``score`` or ``segment``, from the parameter only that job's template has."""
    names = {a[2:].split("=", 1)[0] for a in argv if a.startswith("--")}
    jobs = {job for name, job in JOB_BY_PARAMETER.items() if name in names}
    if len(jobs) != 1:
        raise SystemExit(
            "main.py: give exactly one of --chips (score template) or --raster "
            f"(segment template); got {sorted(names)}"
        )
    return jobs.pop()


def to_cli_args(job: str, argv: Sequence[str]) -> list[str]:
    """Template flags -> ``footprints JOB`` argv (its flags first, then Beam options).

    Example: ``["--chips=c/*", "--csv=true", "--batch_size=64", "--region=us-east1"]``
    -> ``["score", "--chips", "c/*", "--csv", "--batch-size", "64", "--region=us-east1"]``.
    """
    options = {}
    for action in _subparser(job)._actions:
        for flag in action.option_strings:
            options[flag] = action
    own, beam = [], []
    for arg in argv:
        name, has_value, value = arg.partition("=")
        flag = name.replace("_", "-") if name.startswith("--") else name
        action = options.get(flag)
        if action is None or flag in ("-h", "--help"):
            beam.append(arg)
            continue
        if not has_value:
            raise SystemExit(f"main.py: {arg!r} needs a value: write {name}=VALUE")
        if action.nargs == 0:  # a switch such as --csv: template parameters are strings
            if value.lower() not in TRUE | FALSE:
                raise SystemExit(f"main.py: {name}={value!r} must be true or false")
            if value.lower() in TRUE:
                own.append(flag)
        elif value != "":  # an optional parameter left empty means "not given"
            own += [flag, value]
    return [job, *own, *beam]


def main(argv: Sequence[str] | None = None) -> int:
    """Runs the job the template parameters describe; returns the exit code."""
    from footprints_app import cli

    argv = list(sys.argv[1:] if argv is None else argv)
    return cli.main(to_cli_args(job_of(argv), argv))


if __name__ == "__main__":
    sys.exit(main())
