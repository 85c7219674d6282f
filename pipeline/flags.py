"""Settings fields that are also command-line flags, declared once: :func:`flag`.

A dataclass field made with :func:`flag` carries its flag in its metadata:
the flag's name, its help, and where argparse needs them its metavar, type
and choices. From that one declaration

* a command declares the flag (:func:`add_flag`: name, type, default and
  help come from the field), and
* :func:`from_flags` turns the parsed flags back into settings, for every
  job the same way.

Plain data on the ground floor of ``pipeline/``, without Beam or TensorFlow:
the jobs' settings (:mod:`pipeline.settings`) and the settings classes of the
units below the jobs (:class:`pipeline.labels.ClassMap`,
:class:`pipeline.settings.chips.ChipSpec`) declare their flags with it.
"""

from __future__ import annotations

import argparse
import dataclasses
from collections.abc import Sequence
from typing import Any

#: The metadata key of a field's flag (see :func:`flag`).
FLAG = "flag"


def flag(
    default: Any,
    help: str | None,
    *,
    name: str | None = None,
    aliases: Sequence[str] = (),
    metavar: str | None = None,
    type: Any = None,
    choices: Sequence[str] | None = None,
    shown_default: Any = dataclasses.MISSING,
) -> Any:
    """A settings field that is also a command-line flag.

    Args:
        default: The field's default (also the flag's).
        help: The flag's help text (``%(default)s`` shows ``default``).
        name: The flag, e.g. ``--quantile-epsilon`` (default: ``--`` and the
            field name with dashes).
        aliases: Other spellings of the flag.
        metavar: argparse's metavar.
        type: argparse's type (default: ``int`` or ``float`` when the default
            is one; a bool field is an on/off switch).
        choices: The values allowed.
        shown_default: The flag's default where it is not the field's (None:
            the value is worked out later, e.g. from the model).
    """
    return dataclasses.field(
        default=default,
        metadata={
            FLAG: {
                "name": name,
                "aliases": tuple(aliases),
                "help": help,
                "metavar": metavar,
                "type": type,
                "choices": tuple(choices) if choices is not None else None,
                "shown_default": shown_default,
            }
        },
    )


def _flag_fields(cls: type) -> dict[str, dataclasses.Field[Any]]:
    return {f.name: f for f in dataclasses.fields(cls) if FLAG in f.metadata}


def flag_name(cls: type, field: str) -> str:
    """The flag of ``cls``'s setting ``field``, e.g. ``--quantile-epsilon`` for ``epsilon``."""
    return _flag_fields(cls)[field].metadata[FLAG]["name"] or "--" + field.replace("_", "-")


def add_flag(parser: Any, cls: type, field: str, **overrides: Any) -> argparse.Action:
    """Adds the flag of ``cls``'s setting ``field`` to ``parser`` (a parser or a group).

    Args:
        parser: An ``argparse`` parser, argument group or exclusive group.
        cls: A settings class of this package.
        field: The setting's field name.
        **overrides: ``add_argument`` keywords that replace the declared ones.
    """
    f = _flag_fields(cls)[field]
    meta = f.metadata[FLAG]
    default = f.default if meta["shown_default"] is dataclasses.MISSING else meta["shown_default"]
    kwargs: dict[str, Any] = {"dest": field, "help": meta["help"]}
    if isinstance(f.default, bool):
        kwargs["action"] = "store_true"
    else:
        kwargs["default"] = default
        kind = meta["type"] or next((t for t in (int, float) if type(f.default) is t), None)
        if kind is not None:
            kwargs["type"] = kind
    for key in ("metavar", "choices"):
        if meta[key] is not None:
            kwargs[key] = meta[key]
    kwargs.update(overrides)
    action: argparse.Action = parser.add_argument(flag_name(cls, field), *meta["aliases"], **kwargs)
    return action


def from_flags(cls: type, args: argparse.Namespace) -> dict[str, Any]:
    """``{setting: value}`` of every flag-declared setting of ``cls`` found in ``args``.

    The one step from parsed flags to settings, for every job: each field
    declared with :func:`flag` takes the value of its flag (whose ``dest``
    is the field's name). A flag left out
    holds its default, or None where the default is worked out later (the
    job's ``create`` reads None as "not given").
    """
    return {name: getattr(args, name) for name in _flag_fields(cls) if hasattr(args, name)}


def comma_list(text: str) -> tuple[str, ...]:
    """A flag's ``A,B,...`` as a tuple of non-empty, stripped strings."""
    return tuple(v.strip() for v in text.split(",") if v.strip())


def comma_ints(text: str) -> tuple[int, ...]:
    """A flag's band list ``1,2,3`` as a tuple of ints."""
    try:
        return tuple(int(v) for v in comma_list(text))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a comma-separated list of band numbers, e.g. 1,2,3"
        ) from None


def low_high(text: str) -> tuple[float, float]:
    """A flag's ``LOW,HIGH`` as two floats."""
    try:
        low, high = (float(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not LOW,HIGH, e.g. 0,4095") from None
    return low, high
