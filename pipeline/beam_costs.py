"""A construction cost of Beam 2.77 that every job pays, taken out once per process.

Beam asks "does this DoFn use state or timers?" (``userstate.get_dofn_specs``)
whenever it builds, translates or executes a ParDo: about 1,400 times for one
``footprints score`` job of 128 leaf transforms. Each answer inspects the
signature of every bound method of the DoFn (about 30: ``process``,
``setup``, ``display_data``...), so one job made about 42,000
``inspect.signature`` calls, 0.45-0.5 CPU seconds of the job's 4 fixed
seconds on the 2-core CI machine (``footprints score`` on 300 chips,
medians of 2 alternated pairs, issue 24). Beam's own fix, memoizing its
introspection (apache/beam pull request 9925), was never merged.

The answer depends only on the DoFn's class: the state and timer specs are
default values of its methods' parameters. :func:`memoize_dofn_specs` caches
it per class, and asks Beam afresh for any DoFn whose instance holds a bound
method of its own (a method set on the instance could declare other specs).
"""

from __future__ import annotations

import types
from typing import Any

_PATCHED = "_footprints_memoized"


def memoize_dofn_specs() -> None:
    """Caches ``apache_beam.transforms.userstate.get_dofn_specs`` per DoFn class (idempotent)."""
    from apache_beam.transforms import userstate

    original = userstate.get_dofn_specs
    if getattr(original, _PATCHED, False):
        return
    cache: dict[type, Any] = {}

    def get_dofn_specs(dofn: Any) -> Any:
        own = getattr(dofn, "__dict__", None)
        if own is None or any(isinstance(v, types.MethodType) for v in own.values()):
            return original(dofn)
        kind = type(dofn)
        if kind not in cache:
            cache[kind] = original(dofn)
        states, timers = cache[kind]
        return set(states), set(timers)  # copies: a caller may change what it gets

    setattr(get_dofn_specs, _PATCHED, True)
    get_dofn_specs.__doc__ = original.__doc__
    userstate.get_dofn_specs = get_dofn_specs
