"""Settings of the segmentation job (``footprints segment``), without Beam.

:class:`SegmentSettings` holds every setting with its default and checks each
value rule once, on construction; :class:`pipeline.segment.SegmentConfig`
adds the checks that read the inputs (the tiles, the models, the truth). The
command's flags are declared from the fields (:mod:`pipeline.settings`).
"""

from __future__ import annotations

import dataclasses
import datetime
from fractions import Fraction

from footprints.contracts import SegmenterAssets
from footprints.errors import ConfigError
from pipeline import settings as s
from pipeline.settings import FolderOutput, check_batch_sizes
from pipeline.settings.chips import ChipSpec
from pipeline.settings.score import CPU_BATCH_SIZE

#: ``--tta`` choices (:mod:`pipeline.inference.segmenter`).
TTA_MODES = ("none", "flips", "d4")


@dataclasses.dataclass(frozen=True)
class SegmentSettings(FolderOutput):
    """The settings of ``footprints segment``, each value checked on construction.

    Attributes:
        raster: Glob of orthophoto tiles.
        model_dir: Segmenter SavedModel directory.
        output: Output folder.
        assets: The model's assets (window size, bands, scaling).
        halo: Context pixels around each window's core.
        batch_size: Largest batch handed to the model.
        min_batch_size: Smallest batch (None: ``batch_size``).
        tta: Test-time augmentation (``none``, ``flips``, ``d4``).
        serving_graph: ``frozen`` or ``saved``, for the segmenter and the
            classifier (:mod:`pipeline.inference.serving`).
        runtime: ``tensorflow`` or ``onnxruntime`` for the segmenter (``auto``
            is resolved by ``SegmentConfig.create``); the classifier takes ONNX
            Runtime too where it has an ONNX file, unless this is ``tensorflow``.
        int8: Serve the segmenter's int8 ONNX file.
        allow_inexact_int8: Serve it even when its card says it is not within tolerance.
        accelerator: Beam accelerator resource hint for the inference steps
            (segmenter and, with ``classifier``, the classifier), e.g.
            ``type:nvidia-l4;count:1;install-nvidia-driver``; None for CPU.
        mask_threshold: Probability at or above which a pixel is a building
            (footprints, the binary band, IoU). Given as None to ``create``:
            the model's ``mask_threshold`` asset when it has one, else 0.5.
        binary_mask: Also write the binary mask as band 2 of each COG.
        simplify: Footprint simplification tolerance, pixels.
        min_area: Smallest footprint kept, square metres (of the written polygon).
        regularize: Right-angle footprint outlines (``buildingregulariser``).
        footprints_crs: CRS of every geometry table (``--output-crs``;
            default: the tiles' CRS).
        truth_masks: Glob of true masks; pixel IoU and object F1 against
            them go into summary.json (``truth``).
        truth_footprints: A vector file of true building polygons (any CRS),
            instead of ``truth_masks``.
        run_id: Id of this run (tags of the masks, summary, scores).
        classifier: Classifier SavedModel; with it, footprints are chipped
            and scored into ``scores/``.
        residential_fraction: Target residential fraction (with ``classifier``).
        classifier_batch_size: Largest batch of chips handed to the classifier.
        chip_spec: How chips are cut; for tiles that are not uint8, with a
            stretch fixed for the run.
        imagery_date: Date of the imagery for every row (None: each tile's
            TIFF ``DateTime`` tag, else null).
        csv: Also write the main table (``classified/`` with a classifier,
            else ``footprints/``) as ``<table>.csv``.
        bigquery_table: Also load the main table into ``PROJECT:DATASET.TABLE``.
        model_id: The segmenter's id (model card, else directory and hash),
            resolved once by ``create``.
        classifier_model_id: The classifier's id, likewise (with ``classifier``).
    """

    raster: str
    model_dir: str
    output: str
    assets: SegmenterAssets
    halo: int
    batch_size: int = s.batch_size_flag(8, "windows")
    min_batch_size: int | None = s.min_batch_size_flag()
    tta: str = s.flag(
        "none",
        "test-time augmentation: average over 4 flips or 8 rotations and "
        "flips (default: %(default)s)",
        choices=TTA_MODES,
    )
    serving_graph: str = s.serving_graph_flag()
    runtime: str = s.runtime_flag()
    int8: bool = s.int8_flag()
    allow_inexact_int8: bool = s.allow_inexact_int8_flag()
    accelerator: str | None = s.accelerator_flag(
        "the inference steps (segmenter and classifier)",
        "type:nvidia-l4;count:1;install-nvidia-driver",
    )
    mask_threshold: float = s.flag(
        0.5,
        "building probability threshold for footprints and the binary "
        "mask (default: the threshold the model chose on its validation "
        "blocks, recorded in its assets; 0.5 for a model without one)",
        metavar="P",
        shown_default=None,
    )
    binary_mask: bool = s.flag(
        False, "also write the binary mask (1 building) as band 2 of each COG"
    )
    simplify: float = s.flag(
        1.0, "footprint simplification tolerance (default: %(default)s)", metavar="PIXELS"
    )
    # Below a garden shed (the smallest true building of the sample area is 9.3 m²);
    # traced regions under it are noise (issue 23: demo footprints of 4-5 m²).
    min_area: float = s.flag(
        8.0,
        "drop footprints smaller than this, square metres (default: %(default)s)",
        metavar="M2",
    )
    regularize: bool = s.flag(
        False,
        "right-angle footprint outlines (edges aligned to each "
        "building's main direction, as the Microsoft footprints are) "
        "instead of plain simplification; needs "
        "pip install 'footprints[regularize]'",
    )
    footprints_crs: str | None = s.output_crs_flag(
        "--footprints-crs",
        "CRS of the geometry in every table, e.g. EPSG:4326 for BigQuery (default: the tiles' CRS)",
    )
    truth_masks: str | None = s.flag(
        None,
        "true 0/1 masks on the tiles' grids; pixel IoU per tile and "
        "object precision/recall/F1 at IoU >= 0.5 go into summary.json "
        "(truth) and the report",
        metavar="GLOB",
    )
    truth_footprints: str | None = s.flag(
        None,
        "true building polygons instead (GeoPackage, GeoJSON, "
        "Shapefile, GeoParquet; any CRS, reprojected)",
        metavar="FILE",
    )
    run_id: str = s.run_id_flag("", "id of this run (default: generated)")
    classifier: str | None = s.flag(None, "classifier SavedModel directory", metavar="DIR")
    residential_fraction: Fraction | None = s.flag(
        None,
        "target residential fraction in [0, 1] (with --classifier)",
        metavar="P",
    )
    classifier_batch_size: int = s.flag(
        CPU_BATCH_SIZE,
        "largest batch of chips handed to the classifier (default: %(default)s)",
        metavar="N",
    )
    chip_spec: ChipSpec | None = None
    imagery_date: datetime.date | None = s.flag(
        None,
        "date of the imagery on every row (default: each tile's TIFF DateTime tag, else empty)",
        metavar="YYYY-MM-DD",
    )
    csv: bool = s.csv_flag(
        "also write the main table (classified/ with --classifier, else "
        "footprints/) as OUTPUT/<table>.csv, geometry as WKT"
    )
    bigquery_table: str | None = s.bigquery_table_flag(
        "also load the main table into BigQuery (replaces the table)"
    )
    model_id: str = ""
    classifier_model_id: str | None = None

    @property
    def window_size(self) -> int:
        """The model's window size, from its assets."""
        return self.assets.window_size

    def __post_init__(self) -> None:
        window, halo = self.assets.window_size, self.halo
        if halo < 0 or window - 2 * halo < 1:
            raise ConfigError(
                f"--halo {halo!r} must be at least 0 and leave a core of at least one pixel "
                f"in the model's {window}-pixel windows (at most {(window - 1) // 2}); the "
                "model's receptive radius is a good value"
            )
        check_batch_sizes(self.batch_size, self.min_batch_size)
        if self.tta not in TTA_MODES:
            raise ConfigError(f"--tta {self.tta!r} must be one of {TTA_MODES}")
        s.check_serving_graph(self.serving_graph)
        if not 0 < self.mask_threshold <= 1:
            raise ConfigError(f"--mask-threshold {self.mask_threshold!r} must be in (0, 1]")
        if self.simplify < 0 or self.min_area < 0:
            raise ConfigError("--simplify and --min-area must be 0 or more")
