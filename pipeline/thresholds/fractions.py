"""Target residential fractions: one default, and per-region values from a CSV.

The CSV has a header ``region,residential_fraction`` and one row per region::

    region,residential_fraction
    county-041,0.62
    county-043,0.48

Regions not in it use ``--residential-fraction``. A row whose region no chip
carries (a typo such as ``county-41`` for ``county-041``) would leave the real
region on the default without a word, so :func:`unmatched_regions` names such
rows after the run: a ``unmatched_region`` warning in summary.json, and a
failed run under ``--strict-regions``. Fractions are kept as exact
decimals (``Fraction("0.62")``) so ``k = floor(p * N + 1/2)`` does not depend
on binary rounding.
"""

from __future__ import annotations

import csv
import dataclasses
import io
from collections.abc import Iterable
from fractions import Fraction

from apache_beam.io.filesystems import FileSystems

from footprints.errors import ConfigError

CSV_HEADER = ("region", "residential_fraction")


def parse_fraction(text: str, where: str) -> Fraction:
    """Parses a fraction in [0, 1] written as a decimal ("0.35") or "1/3".

    Raises:
        ConfigError: naming ``where`` and the value, if it is not a number in [0, 1].
    """
    try:
        value = Fraction(str(text).strip())
    except (ValueError, ZeroDivisionError):
        raise ConfigError(
            f"{where}: {text!r} is not a number; write the residential fraction as a "
            "decimal between 0 and 1, e.g. 0.35"
        ) from None
    if not 0 <= value <= 1:
        raise ConfigError(
            f"{where}: {text!r} is outside [0, 1]; a residential fraction is a share of "
            "buildings, e.g. 0.35 for 35%"
        )
    return value


@dataclasses.dataclass(frozen=True)
class RegionFractions:
    """The target fraction of each region.

    Attributes:
        default: The fraction for regions without their own.
        per_region: ``(region, fraction)`` pairs, sorted by region.
    """

    default: Fraction
    per_region: tuple[tuple[str, Fraction], ...] = ()

    def for_region(self, region: str) -> Fraction:
        """The target of ``region``."""
        return dict(self.per_region).get(region, self.default)

    def as_dict(self) -> dict[str, Fraction]:
        """The per-region fractions as a plain dict."""
        return dict(self.per_region)


def read_region_fractions(path: str, default: Fraction) -> RegionFractions:
    """Reads and validates a region fractions CSV (any Beam filesystem).

    Raises:
        ConfigError: for a missing file, a wrong header, an empty or repeated
            region, or a fraction outside [0, 1]; the message names the line.
    """
    try:
        with FileSystems.open(path) as f:
            text = f.read().decode("utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"--region-fractions {path!r} cannot be read: {exc}") from exc
    rows = list(csv.reader(io.StringIO(text)))
    if not rows or tuple(c.strip() for c in rows[0]) != CSV_HEADER:
        found = rows[0] if rows else "an empty file"
        raise ConfigError(
            f"--region-fractions {path!r}: the first line must be the header "
            f"{','.join(CSV_HEADER)}, found {found!r}"
        )
    seen: dict[str, Fraction] = {}
    for line, row in enumerate(rows[1:], start=2):
        if not any(c.strip() for c in row):
            continue
        where = f"--region-fractions {path!r} line {line}"
        if len(row) != 2:
            raise ConfigError(
                f"{where}: expected 2 columns (region,residential_fraction), "
                f"found {len(row)}: {row!r}"
            )
        region = row[0].strip()
        if not region:
            raise ConfigError(f"{where}: the region is empty")
        if region in seen:
            raise ConfigError(f"{where}: region {region!r} appears twice; keep one row")
        seen[region] = parse_fraction(row[1], where)
    return RegionFractions(default, tuple(sorted(seen.items())))


def unmatched_regions(fractions: RegionFractions, seen: Iterable[str]) -> list[dict[str, str]]:
    """Warnings for the per-region rows that match no region of the chips.

    Args:
        fractions: The run's targets.
        seen: The regions the chips carried (summary.json ``regions``).

    Returns:
        One ``{"code": "unmatched_region", "message": ...}`` per unmatched
        row, sorted by region; [] when every row matched.
    """
    seen = set(seen)
    known = ", ".join(sorted(seen)[:10]) or "none"
    return [
        {
            "code": "unmatched_region",
            "message": f"--region-fractions names region {region!r} (target {float(f):.2%}), "
            f"but no chip carries it (the chips' regions: {known}); its row was "
            "not used: check the spelling against the chips' region values",
        }
        for region, f in fractions.per_region
        if region not in seen
    ]
