"""The public contracts of footprints, in one place.

Users produce chip records and models to these contracts from their own
systems, and both ``pipeline`` and ``model_training`` import this module, so
the names below cannot drift between training and serving. Changing any of
them is a breaking change: bump :data:`CONTRACT_VERSION` and write a
migration note in ``docs/contracts.md``.

Three contracts live here:

* **Chip record**: a serialized ``tf.train.Example`` with the features in
  :data:`CHIP_FEATURES`, stored in TFRecord shards named
  ``PREFIX-00000-of-000NN.tfrecord`` (``.tfrecord.gz`` when GZIP-compressed).
* **Models**: the classifier SavedModel (``serving_default``: ``examples``
  tf.string [None] -> ``score`` float32 [None]) and the segmenter SavedModel
  (``serving_default``: ``images`` uint8 [None, H, W, C] -> ``mask`` float32
  [None, H, W]) with its :class:`SegmenterAssets` JSON under ``assets/``;
  optionally (contract 3) an ONNX copy of the network, :data:`ONNX_MODEL`,
  beside ``saved_model.pb`` (classifier: decoded ``images`` float32
  [None, S, S, 3] -> ``score`` float32 [None]; segmenter: the whole
  signature), and its int8 twin :data:`ONNX_INT8_MODEL`.
* **Output tables**: the Arrow schemas of ``scores/``, ``errors/``,
  ``footprints/`` and ``classified/`` (:data:`SCORES_SCHEMA`,
  :data:`ERRORS_SCHEMA`, :data:`FOOTPRINTS_SCHEMA`,
  :data:`CLASSIFIED_SCHEMA`). Geometry tables also carry a ``bbox`` struct
  column that the writer adds (GeoParquet's covering).

TensorFlow is imported lazily so that ``footprints --help`` stays fast, and
chip records are written and read without it (:mod:`footprints.example_proto`).
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import types
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import pyarrow as pa

from footprints.errors import ContractError, Reason
from footprints.files import match_files

CONTRACT_VERSION = 3

# --------------------------------------------------------------------------
# Chip record
# --------------------------------------------------------------------------

IMAGE_KEY = "image/encoded"
ID_KEY = "footprint/id"
REGION_KEY = "region"
LABEL_KEY = "label"
WKB_KEY = "footprint/wkb"
CRS_KEY = "footprint/crs"
MASK_KEY = "image/mask"

#: Region given to chips that carry none: the whole run is one region.
DEFAULT_REGION = "all"

#: Label values.
RESIDENTIAL = 1
NON_RESIDENTIAL = 0


@dataclasses.dataclass(frozen=True)
class FeatureSpec:
    """One feature of the chip record."""

    name: str
    kind: str  # "bytes" or "int64", as in tf.train.Feature
    required: bool
    meaning: str


CHIP_FEATURES: tuple[FeatureSpec, ...] = (
    FeatureSpec(IMAGE_KEY, "bytes", True, "PNG or JPEG of the chip (RGB or one band)"),
    FeatureSpec(ID_KEY, "bytes", True, "unique id of the footprint (UTF-8)"),
    FeatureSpec(
        REGION_KEY,
        "bytes",
        False,
        "key for per-region residential fractions (county, project area)",
    ),
    FeatureSpec(LABEL_KEY, "int64", False, "1 residential, 0 non-residential"),
    FeatureSpec(WKB_KEY, "bytes", False, "footprint polygon, WKB"),
    FeatureSpec(CRS_KEY, "bytes", False, "CRS of the polygon, e.g. EPSG:26915"),
    FeatureSpec(
        MASK_KEY,
        "bytes",
        False,
        "PNG, one band, the image's size: 255 where the pixel holds data, 0 where it "
        "is nodata or masked (absent: every pixel holds data); models ignore masked "
        "pixels",
    ),
)


@dataclasses.dataclass(frozen=True)
class Chip:
    """One footprint chip, the in-memory form of a chip record.

    Attributes:
        footprint_id: Unique id of the footprint.
        image: PNG or JPEG bytes of the chip.
        region: Region key, or None for the run's single default region.
        label: 1 residential, 0 non-residential, None if unknown.
        wkb: Footprint polygon as WKB, or None.
        crs: CRS of ``wkb`` (for example ``EPSG:32615``), or None.
        mask: PNG validity mask (255 data, 0 nodata), or None when every
            pixel holds data.
    """

    footprint_id: str
    image: bytes
    region: str | None = None
    label: int | None = None
    wkb: bytes | None = None
    crs: str | None = None
    mask: bytes | None = None

    def __post_init__(self) -> None:
        if not self.footprint_id:
            raise ContractError("a chip needs a non-empty footprint id")
        if not self.image:
            raise ContractError(f"chip {self.footprint_id!r} has no image bytes")
        if self.label not in (None, RESIDENTIAL, NON_RESIDENTIAL):
            raise ContractError(
                f"chip {self.footprint_id!r} has label {self.label!r}; "
                f"use {RESIDENTIAL} (residential) or {NON_RESIDENTIAL} (non-residential)"
            )
        if self.wkb is not None and not self.crs:
            raise ContractError(
                f"chip {self.footprint_id!r} has a polygon but no CRS; set footprint/crs"
            )


def _example_pb2() -> types.ModuleType:
    # TensorFlow's own example_pb2 would load all of TensorFlow (seconds per
    # worker); these are the same messages, declared without it.
    from footprints import example_proto

    return example_proto


def encode_chip(chip: Chip) -> bytes:
    """Serializes a :class:`Chip` to a chip record (a ``tf.train.Example``)."""
    pb = _example_pb2()
    example = pb.Example()
    feature = example.features.feature
    feature[IMAGE_KEY].bytes_list.value.append(chip.image)
    feature[ID_KEY].bytes_list.value.append(chip.footprint_id.encode("utf-8"))
    if chip.region is not None:
        feature[REGION_KEY].bytes_list.value.append(chip.region.encode("utf-8"))
    if chip.label is not None:
        feature[LABEL_KEY].int64_list.value.append(int(chip.label))
    if chip.wkb is not None:
        feature[WKB_KEY].bytes_list.value.append(chip.wkb)
    if chip.crs is not None:
        feature[CRS_KEY].bytes_list.value.append(chip.crs.encode("utf-8"))
    if chip.mask is not None:
        feature[MASK_KEY].bytes_list.value.append(chip.mask)
    # Deterministic: the feature map in key order, so a chip's record is the
    # same bytes in every process (map order otherwise follows a per-process hash).
    record: bytes = example.SerializeToString(deterministic=True)
    return record


def _single(feature: Any, spec: FeatureSpec, footprint: str) -> int | bytes:
    kinds = {"bytes": feature.bytes_list.value, "int64": feature.int64_list.value}
    values = kinds[spec.kind]
    other = feature.int64_list.value if spec.kind == "bytes" else feature.bytes_list.value
    if len(other) or len(feature.float_list.value):
        raise ContractError(
            f"record {footprint}: feature {spec.name!r} must be {spec.kind}; "
            "write it with the type in the chip-record table of docs/contracts.md"
        )
    if len(values) != 1:
        raise ContractError(
            f"record {footprint}: feature {spec.name!r} must hold exactly one value, "
            f"found {len(values)}"
        )
    value: int | bytes = values[0]
    return value


def decode_chip(record: bytes) -> Chip:
    """Parses a chip record, checking it against the contract.

    Raises:
        ContractError: if the bytes are not a ``tf.train.Example`` or a
            feature is missing, empty or of the wrong type.
    """
    pb = _example_pb2()
    example = pb.Example()
    try:
        example.ParseFromString(record)
    except Exception as exc:  # protobuf raises its own DecodeError
        raise ContractError(f"not a tf.train.Example: {exc}") from exc
    feature = example.features.feature
    for spec in CHIP_FEATURES:
        if spec.required and spec.name not in feature:
            raise ContractError(
                f"record lacks required feature {spec.name!r}; every chip record needs "
                f"{IMAGE_KEY!r} and {ID_KEY!r}"
            )
    fid_bytes = _single(feature[ID_KEY], CHIP_FEATURES[1], "<no id>")
    assert isinstance(fid_bytes, bytes)  # the id's spec is of kind "bytes"
    try:
        fid = fid_bytes.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ContractError(f"footprint id {fid_bytes!r} is not UTF-8") from exc
    values: dict[str, Any] = {}
    for spec in CHIP_FEATURES:
        if spec.name in feature and spec.name != ID_KEY:
            values[spec.name] = _single(feature[spec.name], spec, repr(fid))
    text = {}
    for key in (REGION_KEY, CRS_KEY):
        if key in values:
            try:
                text[key] = values[key].decode("utf-8")
            except UnicodeDecodeError as exc:
                raise ContractError(
                    f"record {fid!r}: feature {key!r} is not UTF-8 text: {values[key][:40]!r} "
                    f"({exc.reason} at byte {exc.start}); write it as UTF-8"
                ) from None
    return Chip(
        footprint_id=fid,
        image=values[IMAGE_KEY],
        region=text.get(REGION_KEY),
        label=values.get(LABEL_KEY),
        wkb=values.get(WKB_KEY),
        crs=text.get(CRS_KEY),
        mask=values.get(MASK_KEY),
    )


# --------------------------------------------------------------------------
# Shards
# --------------------------------------------------------------------------

#: Beam ``shard_name_template`` giving ``-00000-of-00004``.
SHARD_TEMPLATE = "-SSSSS-of-NNNNN"
COMPRESSIONS = ("none", "gzip")


def shard_suffix(compression: str) -> str:
    """The file suffix for chip shards: ``.tfrecord`` or ``.tfrecord.gz``."""
    if compression not in COMPRESSIONS:
        raise ContractError(f"compression {compression!r} is not one of {COMPRESSIONS}")
    return ".tfrecord.gz" if compression == "gzip" else ".tfrecord"


def shard_name(prefix: str, index: int, num_shards: int, compression: str = "none") -> str:
    """The name of one shard, e.g. ``chips/area-00001-of-00004.tfrecord``."""
    return f"{prefix}-{index:05d}-of-{num_shards:05d}{shard_suffix(compression)}"


_SHARD_RE = re.compile(r"-(\d{5})-of-(\d{5})\.tfrecord(\.gz)?$")


def parse_shard_name(path: str) -> tuple[str, int, int, str]:
    """Splits a shard path into (prefix, index, num_shards, compression).

    Raises:
        ContractError: if the name does not follow the shard naming contract.
    """
    match = _SHARD_RE.search(path)
    if not match:
        raise ContractError(f"{path!r} is not named PREFIX-00000-of-000NN.tfrecord[.gz]")
    prefix = path[: match.start()]
    return prefix, int(match.group(1)), int(match.group(2)), "gzip" if match.group(3) else "none"


def compression_of(path: str) -> str:
    """``gzip`` for ``*.gz`` shard files, else ``none``."""
    return "gzip" if path.endswith(".gz") else "none"


# --------------------------------------------------------------------------
# Models
# --------------------------------------------------------------------------

SIGNATURE = "serving_default"
CLASSIFIER_INPUT = "examples"
CLASSIFIER_OUTPUT = "score"
SEGMENTER_INPUT = "images"
SEGMENTER_OUTPUT = "mask"
SEGMENTER_ASSETS = "segmenter.json"
MODEL_CARD = "model_card.json"
#: The ONNX copy of the network, beside ``saved_model.pb`` (contract 3, optional).
ONNX_MODEL = "model.onnx"
#: Its int8 (static quantization) twin, optional; the model card's ``onnx.int8`` judges it.
ONNX_INT8_MODEL = "model.int8.onnx"
#: The classifier ONNX model's input: decoded chips, float32 [None, S, S, 3], 0..255.
ONNX_IMAGES = "images"
#: ONNX metadata keys naming where the SavedModel's graph was cut: the decoded image batch
#: and the "record decodable" vector, which the pipeline computes in TensorFlow.
ONNX_DECODE_KEYS = ("decode_images", "decode_valid")
#: Beside the classifier's ONNX file: its decoding alone, a frozen TensorFlow GraphDef from
#: the ``examples`` input to those two tensors (no variables: loads in a fraction of the
#: SavedModel's time). Optional: without it the pipeline cuts the SavedModel's graph itself.
ONNX_DECODE_GRAPH = "model.decode.pb"


@dataclasses.dataclass(frozen=True)
class SegmenterAssets:
    """What the pipeline must know to feed raw raster pixels to a segmenter.

    Stored as JSON at ``<model>/assets/segmenter.json``. Raw pixels of band
    ``bands[i]`` (1-based, as in GDAL) are mapped to the model's uint8 input
    by ``clip(round((raw - offset[i]) * scale[i]), 0, 255)``; see
    :func:`scale_to_model_input`.

    Attributes:
        window_size: Height and width of the model's input windows, pixels.
        bands: 1-based raster band indexes, in the order the model expects.
        raw_dtype: The raster dtype the scaling was fitted on (uint8, uint16).
        offset: Per-band value subtracted from raw pixels.
        scale: Per-band factor applied after the offset.
        band_names: Optional names (red, green, blue, nir, ...).
        receptive_halo: Pixels of context the model needs on each side for
            seamless stitching (0 if unknown).
        mask_threshold: Optional probability at or above which a pixel is a
            building, chosen by training on its validation blocks; ``segment``
            uses it when ``--mask-threshold`` is not given (None: 0.5).
    """

    window_size: int
    bands: tuple[int, ...]
    raw_dtype: str
    offset: tuple[float, ...]
    scale: tuple[float, ...]
    band_names: tuple[str, ...] = ()
    receptive_halo: int = 0
    mask_threshold: float | None = None
    contract_version: int = CONTRACT_VERSION

    def __post_init__(self) -> None:
        if self.window_size < 8:
            raise ContractError(f"window_size {self.window_size!r} must be at least 8 pixels")
        n = len(self.bands)
        if n == 0 or any(b < 1 for b in self.bands):
            raise ContractError(f"bands {self.bands!r} must be 1-based band indexes")
        if len(self.offset) != n or len(self.scale) != n:
            raise ContractError(
                f"offset ({len(self.offset)}) and scale ({len(self.scale)}) need one value "
                f"per band ({n})"
            )
        if self.band_names and len(self.band_names) != n:
            raise ContractError(f"band_names {self.band_names!r} needs one name per band")
        if self.raw_dtype not in ("uint8", "uint16"):
            raise ContractError(f"raw_dtype {self.raw_dtype!r} must be uint8 or uint16")
        if self.mask_threshold is not None and not 0 < self.mask_threshold < 1:
            raise ContractError(f"mask_threshold {self.mask_threshold!r} must be in (0, 1)")

    @property
    def band_count(self) -> int:
        """Number of bands the model reads."""
        return len(self.bands)

    def to_json(self) -> str:
        """The assets as indented JSON, as written next to the model."""
        return json.dumps(dataclasses.asdict(self), indent=2)

    @classmethod
    def from_json(cls, text: str) -> SegmenterAssets:
        """Parses assets JSON, raising ContractError for unknown keys or bad values."""
        try:
            raw = json.loads(text)
            fields = {f.name for f in dataclasses.fields(cls)}
            unknown = set(raw) - fields
            if unknown:
                raise ContractError(f"unknown keys {sorted(unknown)} in {SEGMENTER_ASSETS}")
            for key in ("bands", "offset", "scale", "band_names"):
                if key in raw:
                    raw[key] = tuple(raw[key])
            return cls(**raw)
        except (TypeError, ValueError) as exc:
            if isinstance(exc, ContractError):
                raise
            raise ContractError(f"{SEGMENTER_ASSETS} is not valid: {exc}") from exc

    @classmethod
    def identity(cls, window_size: int, band_count: int = 3) -> SegmenterAssets:
        """Assets for uint8 imagery fed as it is (offset 0, scale 1)."""
        return cls(
            window_size=window_size,
            bands=tuple(range(1, band_count + 1)),
            raw_dtype="uint8",
            offset=(0.0,) * band_count,
            scale=(1.0,) * band_count,
        )


def scale_to_model_input(raw: np.ndarray, assets: SegmenterAssets) -> np.ndarray:
    """Maps raw pixels, shaped [..., bands], to the segmenter's uint8 input."""
    if raw.shape[-1] != assets.band_count:
        raise ContractError(
            f"pixels have {raw.shape[-1]} bands, the model expects {assets.band_count}"
        )
    offset = np.asarray(assets.offset, dtype=np.float32)
    scale = np.asarray(assets.scale, dtype=np.float32)
    if raw.dtype == np.uint8 and not offset.any() and (scale == 1).all():
        return raw
    out = (raw.astype(np.float32) - offset) * scale
    scaled: np.ndarray = np.clip(np.rint(out), 0, 255).astype(np.uint8)
    return scaled


def model_dir_exists(model_dir: str) -> bool:
    """Whether ``model_dir`` exists: a local path, or a URL with a saved_model.pb under it.

    Object stores have no folders (``FileSystems.exists("gs://b/models/m")`` is False even
    when objects lie under it), so a remote model is found by its ``saved_model.pb``.
    """
    if "://" not in model_dir:
        return os.path.exists(model_dir)
    from apache_beam.io.filesystems import FileSystems

    found: bool = FileSystems.exists(model_dir.rstrip("/") + "/saved_model.pb")
    return found


def local_model_dir(model_dir: str) -> str:
    """A local copy of a model directory: ``model_dir`` itself when it is on local disk.

    TensorFlow reads ``gs://`` only from Google's own endpoint (it cannot be pointed at a
    storage emulator or another S3/GCS-compatible store) and knows no other object store, so
    a remote model (any URL Beam's ``FileSystems`` reads: ``gs://``, ``s3://``, ...) is copied
    once per process to a temporary folder and loaded from there. Models are small next to
    the worker's disk; the copy is keyed by the URL, so every load in a process shares it.
    """
    if "://" not in model_dir:
        return model_dir
    import hashlib
    import tempfile

    from apache_beam.io.filesystems import FileSystems

    url = model_dir.rstrip("/")
    local = os.path.join(
        tempfile.gettempdir(), "footprints-models", hashlib.sha1(url.encode()).hexdigest()[:16]
    )
    done = os.path.join(local, ".complete")
    if os.path.exists(done):
        return local
    files = match_files(url + "/**")
    if not files:
        raise ContractError(f"{model_dir!r} holds no files; pass the model directory")
    for path in files:
        target = os.path.join(local, path[len(url) + 1 :])
        os.makedirs(os.path.dirname(target), exist_ok=True)
        # Write aside and rename, so a process killed mid-copy leaves no partial file.
        with FileSystems.open(path) as src, open(target + ".part", "wb") as dst:
            dst.write(src.read())
        os.replace(target + ".part", target)
    open(done, "w").close()
    return local


def read_segmenter_assets(model_dir: str) -> SegmenterAssets:
    """Reads ``<model_dir>/assets/segmenter.json``."""
    path = os.path.join(local_model_dir(model_dir), "assets", SEGMENTER_ASSETS)
    if not os.path.exists(path):
        raise ContractError(
            f"{model_dir!r} has no assets/{SEGMENTER_ASSETS}; export the segmenter with "
            "`footprints train segmenter` or write the file as in docs/contracts.md"
        )
    with open(path, encoding="utf-8") as f:
        return SegmenterAssets.from_json(f.read())


def model_dir_of(path: str) -> str:
    """The SavedModel directory a ``--model`` path means.

    ``footprints train ... --output seg`` writes the SavedModel to
    ``seg/model``; passing ``seg`` means that model, so it is accepted.
    Any other path is returned as it is.
    """
    inner = os.path.join(path, "model")
    if not os.path.exists(os.path.join(path, "saved_model.pb")) and os.path.exists(
        os.path.join(inner, "saved_model.pb")
    ):
        return inner
    return path


def _signature(
    model_dir: str, kind: str, load: Callable[[str], Any] | None = None
) -> tuple[Any, Any]:
    import tensorflow as tf

    load = load or tf.saved_model.load
    local = local_model_dir(model_dir)
    if not os.path.isdir(local) or not os.path.exists(os.path.join(local, "saved_model.pb")):
        raise ContractError(
            f"{model_dir!r} is not a SavedModel directory (no saved_model.pb); pass the "
            f"directory that `footprints train {kind}` exported (its --output/model)"
        )
    try:
        loaded = load(local)
    except Exception as exc:
        raise ContractError(f"cannot load SavedModel {model_dir!r}: {exc}") from exc
    if SIGNATURE not in loaded.signatures:
        raise ContractError(
            f"SavedModel {model_dir!r} has no {SIGNATURE!r} signature "
            f"(it has {sorted(loaded.signatures)})"
        )
    return loaded, loaded.signatures[SIGNATURE]


def _check_io(
    model_dir: str,
    fn: Any,
    name: str,
    dtype: str,
    rank: int,
    outputs: Mapping[str, Any],
    out_name: str,
    out_dtype: str,
    out_rank: int,
) -> None:
    _, inputs = fn.structured_input_signature
    if set(inputs) != {name}:
        raise ContractError(
            f"{model_dir!r}: {SIGNATURE} must take exactly one input {name!r}, "
            f"it takes {sorted(inputs)}"
        )
    spec = inputs[name]
    if spec.dtype.name != dtype or spec.shape.rank != rank:
        raise ContractError(
            f"{model_dir!r}: input {name!r} must be {dtype} of rank {rank}, "
            f"it is {spec.dtype.name} {spec.shape}"
        )
    if out_name not in outputs:
        raise ContractError(
            f"{model_dir!r}: {SIGNATURE} must return {out_name!r}, it returns {sorted(outputs)}"
        )
    out = outputs[out_name]
    if out.dtype.name != out_dtype or out.shape.rank != out_rank:
        raise ContractError(
            f"{model_dir!r}: output {out_name!r} must be {out_dtype} of rank {out_rank}, "
            f"it is {out.dtype.name} {out.shape}"
        )


def check_classifier_model(model_dir: str, load: Callable[[str], Any] | None = None) -> None:
    """Raises :class:`ContractError` unless ``model_dir`` meets the classifier contract.

    Args:
        model_dir: The SavedModel directory (local or a Beam filesystem URL).
        load: Loads a local SavedModel directory (default ``tf.saved_model.load``);
            the scoring job passes its per-process cache, so the model it checks is
            the one it scores with, loaded once.
    """
    _, fn = _signature(model_dir, "classifier", load)
    _check_io(
        model_dir,
        fn,
        CLASSIFIER_INPUT,
        "string",
        1,
        fn.structured_outputs,
        CLASSIFIER_OUTPUT,
        "float32",
        1,
    )


def check_segmenter_model(model_dir: str) -> SegmenterAssets:
    """Checks the segmenter contract and returns the model's assets."""
    assets = read_segmenter_assets(model_dir)
    _, fn = _signature(model_dir, "segmenter")
    _check_io(
        model_dir,
        fn,
        SEGMENTER_INPUT,
        "uint8",
        4,
        fn.structured_outputs,
        SEGMENTER_OUTPUT,
        "float32",
        3,
    )
    _, inputs = fn.structured_input_signature
    channels = inputs[SEGMENTER_INPUT].shape[-1]
    if channels is not None and channels != assets.band_count:
        raise ContractError(
            f"{model_dir!r}: the model takes {channels} channels but its assets list "
            f"{assets.band_count} bands"
        )
    return assets


def read_model_card(model_dir: str) -> dict[str, Any]:
    """The model card JSON next to a model (``<model>/assets/model_card.json``), or {}."""
    local = local_model_dir(model_dir)
    for path in (os.path.join(local, "assets", MODEL_CARD), os.path.join(local, MODEL_CARD)):
        if os.path.exists(path):
            with open(path, encoding="utf-8") as f:
                card: dict[str, Any] = json.load(f)
                return card
    return {}


# --------------------------------------------------------------------------
# Output tables
# --------------------------------------------------------------------------

SCORES_SCHEMA = pa.schema(
    [
        pa.field("footprint_id", pa.string(), nullable=False),
        pa.field("region", pa.string(), nullable=False),
        pa.field("score", pa.float32(), nullable=False),
        pa.field("percentile", pa.float32(), nullable=False),
        pa.field("is_residential", pa.bool_(), nullable=False),
        pa.field("label", pa.int8()),
        pa.field("threshold", pa.float32(), nullable=False),
        pa.field("target_fraction", pa.float32(), nullable=False),
        pa.field("classifier_model_id", pa.string(), nullable=False),
        pa.field("run_id", pa.string(), nullable=False),
        pa.field("centroid_lon", pa.float64()),
        pa.field("centroid_lat", pa.float64()),
        pa.field("geometry", pa.binary()),
    ]
)

ERRORS_SCHEMA = pa.schema(
    [
        pa.field("source", pa.string(), nullable=False),
        pa.field("record", pa.string(), nullable=False),
        pa.field("stage", pa.string(), nullable=False),
        pa.field("error", pa.string(), nullable=False),
        pa.field("message", pa.string(), nullable=False),
    ]
)

_FOOTPRINT_FIELDS = [
    pa.field("footprint_id", pa.string(), nullable=False),
    pa.field("tile", pa.string(), nullable=False),
    pa.field("area_m2", pa.float64(), nullable=False),
    pa.field("mean_probability", pa.float32(), nullable=False),
    pa.field("centroid_lon", pa.float64(), nullable=False),
    pa.field("centroid_lat", pa.float64(), nullable=False),
    pa.field("segmenter_model_id", pa.string(), nullable=False),
    pa.field("run_id", pa.string(), nullable=False),
    pa.field("imagery_date", pa.date32()),
]

FOOTPRINTS_SCHEMA = pa.schema(
    [*_FOOTPRINT_FIELDS, pa.field("geometry", pa.binary(), nullable=False)]
)

#: ``classified/``: one row per building of ``segment --classifier``, with
#: its footprint, its residential label and the provenance of both. The
#: classification columns are null for a building that could not be chipped
#: or scored (its reason is in ``errors/``).
CLASSIFIED_SCHEMA = pa.schema(
    [
        *_FOOTPRINT_FIELDS,
        pa.field("region", pa.string()),
        pa.field("score", pa.float32()),
        pa.field("percentile", pa.float32()),
        pa.field("is_residential", pa.bool_()),
        pa.field("threshold", pa.float32()),
        pa.field("target_fraction", pa.float32()),
        pa.field("classifier_model_id", pa.string()),
        pa.field("geometry", pa.binary(), nullable=False),
    ]
)


@dataclasses.dataclass(frozen=True)
class ErrorRecord:
    """One dead letter: what failed, where, and why.

    Attributes:
        source: The input file (shard, image, raster, vector file).
        record: Which record in it: a footprint id, a feature index or a byte offset.
        stage: The pipeline stage that rejected it (read, decode, chip, ...).
        error: Its :class:`~footprints.errors.Reason` (``invalid_geometry``,
            ...), kept as plain text (a Beam key coder needs no enum); a
            string that is not a reason code raises ContractError.
        message: What happened and how to fix it, for a person.
    """

    source: str
    record: str
    stage: str
    error: str
    message: str

    def __post_init__(self) -> None:
        try:
            reason = Reason(self.error)
        except ValueError:
            raise ContractError(
                f"{self.error!r} is not a reason code of the errors/ table; add it to "
                "footprints.errors.Reason (and docs/contracts.md) or use one of "
                f"{sorted(Reason)}"
            ) from None
        object.__setattr__(self, "error", reason.value)

    def to_row(self) -> dict[str, str]:
        """The record as a row of ERRORS_SCHEMA."""
        return dataclasses.asdict(self)


#: The tagged output every stage sends its dead letters (:class:`ErrorRecord`) to.
ERRORS = "errors"


class Rejected(Exception):
    """A record or tile a stage cannot use: its reason and a message for a person.

    The one carrier of a rejection (a chip that cannot be cut, a tile that
    cannot be read, a damaged shard): the stage catches it and sends
    :meth:`to_error` to its :data:`ERRORS` output, so the run goes on.

    Attributes:
        reason: The :class:`~footprints.errors.Reason` code for ``errors/``.
    """

    def __init__(self, reason: Reason | str, message: str):
        super().__init__(message)
        self.reason = Reason(reason)

    def to_error(self, source: str, stage: str, record: str = "", hint: str = "") -> ErrorRecord:
        """The dead letter of this rejection; ``hint`` (how to go on) follows the message."""
        message = f"{self}; {hint}" if hint else str(self)
        return ErrorRecord(
            source=source, record=record, stage=stage, error=self.reason, message=message
        )


#: Beam metrics namespaces, one per job (``footprints.<job>``): ``summary.json``
#: lists each metric as ``<namespace>/<name>`` (``footprints.score/records_read``).
#: A stage shared by jobs counts in the namespace of the job it was written for.
METRICS_PREPARE = "footprints.prepare"
METRICS_SCORE = "footprints.score"
METRICS_SEGMENT = "footprints.segment"


def validate_rows(rows: Sequence[Mapping[str, Any]], schema: pa.Schema) -> pa.Table:
    """Builds an Arrow table from rows, raising ContractError if they do not fit."""
    try:
        return pa.Table.from_pylist(list(rows), schema=schema)
    except (pa.ArrowInvalid, pa.ArrowTypeError, KeyError) as exc:
        raise ContractError(f"rows do not fit the table schema: {exc}") from exc
