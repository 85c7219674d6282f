"""The small exception hierarchy of footprints.

Every error a user can cause derives from :class:`FootprintsError`. The CLI
catches that base class and prints its message as a one-line reason with a
non-zero exit code, so messages must say what was wrong (showing the offending
value with ``!r``) and how to fix it. A broken invariant of the code itself is
a :class:`Bug`: the CLI reports it as a failed run (exit 1), never as the
user's mistake. A record or tile a stage cannot use is not an exception the
user sees: it becomes a dead letter in ``errors/`` whose ``error`` column is a
:class:`Reason` (see :class:`footprints.contracts.Rejected`).
"""

import enum


class FootprintsError(Exception):
    """Base class for errors a user can cause and fix."""


class ConfigError(FootprintsError, ValueError):
    """A flag or option is invalid; raised before any pipeline is built."""


class ContractError(FootprintsError, ValueError):
    """A record, model or file does not meet a contract in ``footprints.contracts``."""


class InputError(FootprintsError, ValueError):
    """An input file cannot be used (unreadable, no CRS, wrong bands, ...)."""


class Bug(RuntimeError):
    """An invariant of the code broke: a bug to report, not an error the user can fix.

    Deliberately not a :class:`FootprintsError`: the CLI maps it to exit 1
    (the run failed), not to exit 2 (nothing ran: fix the flags or inputs).
    """


class TranslatedNotRun(Exception):
    """The job was translated for its runner and not run (Beam's ``--dry_run=True``).

    Not a failure: the CLI prints the message and exits 0.
    """


# Exit codes of the ``footprints`` command; each means one thing.
EXIT_OK = 0  # done: outputs written, counts reconcile, quality gates passed
EXIT_FAILED = 1  # the run failed part-way (an error during the pipeline or training)
EXIT_USAGE = 2  # nothing ran: invalid flags or inputs
EXIT_CHECK = 3  # done, but counts do not reconcile or a quality gate tripped
EXIT_INTERRUPTED = 130  # SIGINT (Ctrl-C): 128 + the signal's number, as shells report it
EXIT_TERMINATED = 143  # SIGTERM


class Reason(enum.StrEnum):
    """The reason codes of the ``errors/`` table's ``error`` column, one per cause.

    The column is public (analysts group dead letters by it), so every code a
    stage can write is a member here (a ``str``: ``Reason.NO_CRS == "no_crs"``),
    with its meaning in :data:`REASONS` and in ``docs/contracts.md``. The same
    cause gets the same code in every command: a rotated tile is
    ``not_north_up`` whether ``prepare``, ``segment`` or ``train segmenter``
    finds it.
    """

    # Raster tiles (footprints.tiles.read_header and check_for_model)
    UNREADABLE = "unreadable"
    NO_CRS = "no_crs"
    NO_TRANSFORM = "no_transform"
    NOT_NORTH_UP = "not_north_up"
    TRUNCATED = "truncated"
    DTYPE = "dtype"
    BAND_COUNT = "band_count"
    DUPLICATE_SCENE = "duplicate_scene"
    # Reading pixels, cutting chips
    READ_FAILED = "read_failed"
    NO_RASTER = "no_raster"
    PARTLY_OUTSIDE_RASTERS = "partly_outside_rasters"
    BAND_MISMATCH = "band_mismatch"
    NODATA = "nodata"
    # Footprint vectors
    UNREADABLE_FEATURE = "unreadable_feature"
    MISSING_GEOMETRY = "missing_geometry"
    INVALID_GEOMETRY = "invalid_geometry"
    NOT_A_POLYGON = "not_a_polygon"
    # Images and chip records
    UNDECODABLE_IMAGE = "undecodable_image"
    TRUNCATED_SHARD = "truncated_shard"
    CORRUPT_SHARD = "corrupt_shard"
    UNREADABLE_SHARD = "unreadable_shard"
    INVALID_RECORD = "invalid_record"
    INVALID_CRS = "invalid_crs"
    IMAGE_TOO_LARGE = "image_too_large"
    # Models
    MODEL_REJECTED_RECORD = "model_rejected_record"
    NON_FINITE_SCORE = "non_finite_score"
    SCORE_OUT_OF_RANGE = "score_out_of_range"
    INFERENCE_FAILED = "inference_failed"
    NO_WINDOW_INFERRED = "no_window_inferred"


#: Every reason code and what it means; ``docs/contracts.md`` lists the same.
REASONS: dict[str, str] = {
    Reason.UNREADABLE: "not a raster GDAL can open",
    Reason.NO_CRS: "the raster has no CRS",
    Reason.NO_TRANSFORM: "the raster has no geotransform (pixel size and origin)",
    Reason.NOT_NORTH_UP: "the geotransform is rotated or south-up",
    Reason.TRUNCATED: "the raster cannot be read to its last block (a cut-off file)",
    Reason.DTYPE: "the bands' data type differs between bands or from the model's",
    Reason.BAND_COUNT: "the raster has fewer bands than the model reads",
    Reason.DUPLICATE_SCENE: "another tile in the run has the same file name",
    Reason.READ_FAILED: "reading pixels failed after the header was fine (a damaged block)",
    Reason.NO_RASTER: "no raster tile lies under the footprint",
    Reason.PARTLY_OUTSIDE_RASTERS: "less than --min-coverage of the footprint is on the tiles",
    Reason.BAND_MISMATCH: "the rasters lack a band asked for, or neighbours differ in layout",
    Reason.NODATA: "less than --min-coverage of the footprint's pixels hold data",
    Reason.UNREADABLE_FEATURE: "a range of features in the vector file cannot be read",
    Reason.MISSING_GEOMETRY: "the feature has no geometry, or an empty one",
    Reason.INVALID_GEOMETRY: "the geometry cannot be parsed or is not a valid polygon",
    Reason.NOT_A_POLYGON: "the geometry is not a polygon or multipolygon",
    Reason.UNDECODABLE_IMAGE: "the image is not a complete PNG or JPEG",
    Reason.TRUNCATED_SHARD: "the chip shard ends inside a record",
    Reason.CORRUPT_SHARD: "a record's length or data fails its CRC32C check",
    Reason.UNREADABLE_SHARD: "the chip shard or its GZIP stream cannot be read",
    Reason.INVALID_RECORD: (
        "the record is not a chip record (a feature missing, mistyped or not UTF-8 text)"
    ),
    Reason.INVALID_CRS: "the record's footprint/crs is not a CRS pyproj knows",
    Reason.IMAGE_TOO_LARGE: "the image's header declares more pixels than --max-chip-pixels",
    Reason.MODEL_REJECTED_RECORD: "the classifier failed on this record alone",
    Reason.NON_FINITE_SCORE: "the classifier returned NaN or infinity",
    Reason.SCORE_OUT_OF_RANGE: "the classifier returned a score outside [0, 1]",
    Reason.INFERENCE_FAILED: "the segmenter failed on this window",
    Reason.NO_WINDOW_INFERRED: "no window of the tile was inferred, so it has no mask",
}
