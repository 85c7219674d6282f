"""How chips are cut (:class:`ChipSpec`): a setting of ``prepare`` and ``segment``, without Beam.

The cutting itself is :mod:`pipeline.chipping`, which re-exports these names.
"""

from __future__ import annotations

import dataclasses

from footprints.errors import ConfigError
from pipeline import flags

RESAMPLING = ("nearest", "bilinear", "cubic", "average")
IMAGE_FORMATS = ("png", "jpeg")
#: The default chip side for footprints, pixels.
CHIP_SIZE = 96


@dataclasses.dataclass(frozen=True)
class ChipSpec:
    """How chips are cut.

    Attributes:
        size: Output side in pixels; 0 keeps the native pixels (no resampling).
        margin: Added on each side, as a fraction of the footprint's larger side.
        min_extent: Smallest chip side in metres (converted for rasters in
            feet or degrees).
        bands: 1-based bands to keep; empty means 1,2,3 (or 1 for one band).
        value_range: (low, high) raw values mapped to 0..255 for rasters that
            are not uint8; None keeps uint8 as it is.
        image_format: ``png`` (lossless) or ``jpeg``.
        min_coverage: Smallest share of the footprint the rasters must cover.
        resampling: For reprojection and resizing.
    """

    size: int = flags.flag(
        CHIP_SIZE,
        "output side in pixels, 0 = native pixels (default: "
        f"{CHIP_SIZE} for footprints, 0 = as they are for images)",
        name="--chip-size",
        metavar="CHIP_SIZE",
        shown_default=None,
    )
    margin: float = flags.flag(
        0.25,
        "context on each side, as a fraction of the footprint's larger side (default: %(default)s)",
    )
    min_extent: float = flags.flag(
        20.0, "smallest chip side in ground units, metres (default: %(default)s)"
    )
    bands: tuple[int, ...] = flags.flag(
        (),
        "1-based bands, 1 or 3 (default: 1,2,3, or 1 for single-band rasters)",
        type=flags.comma_ints,
    )
    value_range: tuple[float, float] | None = flags.flag(
        None,
        "raw values mapped to 0..255 for non-8-bit rasters (default: a "
        "0.5-99.5%% stretch estimated once over the area)",
        metavar="LOW,HIGH",
        type=flags.low_high,
    )
    image_format: str = flags.flag("png", None, choices=IMAGE_FORMATS)
    min_coverage: float = flags.flag(
        0.5, "smallest share of a footprint the rasters must cover (default: %(default)s)"
    )
    resampling: str = flags.flag("bilinear", None, choices=RESAMPLING)

    def __post_init__(self) -> None:
        if self.size < 0 or (0 < self.size < 8):
            raise ConfigError(f"--chip-size {self.size!r} must be 0 (native) or at least 8")
        if not 0 <= self.margin <= 5:
            raise ConfigError(f"--margin {self.margin!r} must be between 0 and 5")
        if self.min_extent < 0:
            raise ConfigError(f"--min-extent {self.min_extent!r} must be >= 0")
        if self.bands and (len(self.bands) not in (1, 3) or min(self.bands) < 1):
            raise ConfigError(
                f"--bands {self.bands!r} must name 1 or 3 bands, 1-based (e.g. 1,2,3)"
            )
        if self.value_range and not self.value_range[0] < self.value_range[1]:
            raise ConfigError(f"--value-range {self.value_range!r} needs LOW < HIGH")
        if self.image_format not in IMAGE_FORMATS:
            raise ConfigError(
                f"--image-format {self.image_format!r} must be one of {IMAGE_FORMATS}"
            )
        if not 0 < self.min_coverage <= 1:
            raise ConfigError(f"--min-coverage {self.min_coverage!r} must be in (0, 1]")
        if self.resampling not in RESAMPLING:
            raise ConfigError(f"--resampling {self.resampling!r} must be one of {RESAMPLING}")
