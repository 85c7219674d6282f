"""Settings of the chipping job (``footprints prepare``), without Beam.

:class:`PrepareSettings` holds every setting with its default and checks each
value rule on construction; :class:`pipeline.prepare.PrepareConfig` adds the
checks that read the inputs (the raster glob, the footprint file) and fixes
the run's 8-bit stretch.
"""

from __future__ import annotations

import dataclasses
import os
from typing import TYPE_CHECKING

from footprints import contracts
from footprints.errors import ConfigError
from pipeline import settings as s
from pipeline.labels import ClassMap
from pipeline.settings.chips import ChipSpec

if TYPE_CHECKING:
    from pipeline.sources.vectors import VectorInfo


@dataclasses.dataclass(frozen=True)
class PrepareSettings:
    """The settings of one ``prepare`` run (see ``footprints prepare --help``).

    ``PrepareConfig.create`` also checks the inputs; the constructor checks
    the flags only. For image folders, ``spec.size`` 0
    keeps each image's bytes as they are; any other size resizes and
    re-encodes them as PNG. The field defaults are the command's defaults.
    """

    output: str
    images: str | None = None
    rasters: str | None = None
    footprints: str | None = None
    id_field: str | None = s.flag(
        None, "attribute holding a unique footprint id (default: FILE-STEM-<feature index>)"
    )
    class_field: str | None = s.flag(None, "attribute holding the class, e.g. building")
    region_field: str | None = s.flag(None, "attribute holding the region, e.g. county")
    class_map: ClassMap = ClassMap()
    spec: ChipSpec = ChipSpec()
    num_shards: int = s.flag(4, "(default: %(default)s)")
    compression: str = s.flag("none", None, choices=contracts.COMPRESSIONS)
    run_id: str = s.run_id_flag("", "id of this run in its summary (default: generated)")
    #: The footprint file's header (a :class:`pipeline.sources.vectors.VectorInfo`), read by
    #: ``create`` (None for images); the sources sit a floor above the settings: the type
    #: is imported for the type checker only.
    info: VectorInfo | None = dataclasses.field(default=None, compare=False)

    def __post_init__(self) -> None:
        if bool(self.images) == bool(self.rasters or self.footprints):
            raise ConfigError("give either --images DIR, or --rasters GLOB with --footprints FILE")
        if self.rasters and not self.footprints or self.footprints and not self.rasters:
            raise ConfigError(
                "--rasters and --footprints go together: the tiles to cut "
                "from and the polygons to cut"
            )
        if self.images and not os.path.isdir(self.images):
            raise ConfigError(f"--images {self.images!r} is not a folder")
        if self.num_shards < 1:
            raise ConfigError(f"--num-shards {self.num_shards!r} must be at least 1")
        if self.compression not in contracts.COMPRESSIONS:
            raise ConfigError(
                f"--compression {self.compression!r} must be one of {contracts.COMPRESSIONS}"
            )
        if not self.output or self.output.endswith(("/", os.sep)):
            raise ConfigError(
                f"--output {self.output!r} must be a path prefix such as "
                "out/chips/area (shards become out/chips/area-00000-of-...)"
            )

    @property
    def errors_dir(self) -> str:
        """Folder of the run's dead letters."""
        return f"{self.output}-errors"

    @property
    def summary_path(self) -> str:
        """Path of the run's summary JSON."""
        return f"{self.output}-summary.json"
