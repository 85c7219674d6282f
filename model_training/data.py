"""The classifier's input: chip shards to batches of ``(image, label)``.

The steps, in the order they run (this order is what makes caching pay):

1. **list** the shards of a glob (:func:`list_shards`);
2. **interleave** their records in parallel, each shard with its own
   compression (:func:`record_dataset`);
3. **parse** the chip features and keep the training or the validation
   split, chosen by a stable hash of the footprint id so a footprint never
   moves between splits when shards are re-cut (:class:`ChipSplit`);
4. **decode and resize** with :func:`decode_resize`, the same function the
   exported SavedModel runs in its graph, so training and serving cannot
   disagree about preprocessing;
5. **cache** the decoded images (memory or a file), then shuffle, augment,
   batch and prefetch (:func:`classifier_dataset`).

Every step is deterministic, training included: shards interleave in a fixed
order, parallel maps keep their order (``deterministic=True``), the shuffle
is seeded, and the augmentation's random ops draw from the global seed in
element order (the trainers turn on TensorFlow's op determinism, under which
tf.data runs a map with stateful random ops one element at a time; for
64-pixel chips that costs little). So one seed on one chip set gives one
model; see :func:`model_training.fitting.seed_everything`.

Before any of this, :func:`count_labels` reads the split once to count the
classes: the trainers use the counts for class weights and to stop with a
clear error on empty shards or a class with no examples.
"""

from __future__ import annotations

import dataclasses
import logging

import numpy as np
import tensorflow as tf

from footprints import contracts
from footprints.errors import ConfigError, InputError
from footprints.files import match_files
from model_training import augment as aug
from model_training.masking import fill_masked

log = logging.getLogger(__name__)

AUTOTUNE = tf.data.AUTOTUNE

#: The classes a chip label can take, and what they mean.
CLASS_NAMES = {contracts.NON_RESIDENTIAL: "non-residential", contracts.RESIDENTIAL: "residential"}

_PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
_JPEG_MAGIC = b"\xff\xd8\xff"
_SPLIT_BUCKETS = 10_000
_NO_LABEL = -1

#: Key of the serialized record in :meth:`ChipSplit.parsed` elements.
SERIALIZED = "serialized"

_FEATURES = {
    contracts.IMAGE_KEY: tf.io.FixedLenFeature([], tf.string, default_value=""),
    contracts.ID_KEY: tf.io.FixedLenFeature([], tf.string, default_value=""),
    contracts.LABEL_KEY: tf.io.FixedLenFeature([], tf.int64, default_value=_NO_LABEL),
    contracts.MASK_KEY: tf.io.FixedLenFeature([], tf.string, default_value=""),
}


# --------------------------------------------------------------------------
# Decoding, shared with the exported model
# --------------------------------------------------------------------------


def is_decodable(encoded: tf.Tensor) -> tf.Tensor:
    """True where the bytes start like a PNG or a JPEG.

    A signature check, not a full decode: it is what the exported graph can
    afford per record so that one non-image record does not fail its batch.
    A truncated PNG or JPEG with a valid header still fails at decode time;
    the scoring pipeline decode-checks records before batching for that.

    Args:
        encoded: tf.string tensor of any shape.

    Returns:
        A bool tensor of the same shape.
    """
    png = tf.equal(tf.strings.substr(encoded, 0, len(_PNG_MAGIC)), _PNG_MAGIC)
    jpeg = tf.equal(tf.strings.substr(encoded, 0, len(_JPEG_MAGIC)), _JPEG_MAGIC)
    return tf.logical_or(png, jpeg)


def decode_resize(encoded: tf.Tensor, image_size: int) -> tf.Tensor:
    """Decodes one PNG or JPEG chip to a float32 RGB image of the model's size.

    Grey (one band) and RGBA chips become RGB, 16-bit PNGs are scaled to the
    8-bit range, and the result keeps the 0..255 value range: the models
    normalize in their first layer, so what is fed here is exactly what a
    user's own pipeline would feed the ``.keras`` model.

    Args:
        encoded: Scalar tf.string with PNG or JPEG bytes.
        image_size: Height and width of the output, pixels.

    Returns:
        float32 tensor ``[image_size, image_size, 3]`` with values in 0..255.
    """
    image = tf.io.decode_image(encoded, channels=3, dtype=tf.uint8, expand_animations=False)
    image = tf.image.resize(tf.cast(image, tf.float32), [image_size, image_size], antialias=True)
    image = tf.clip_by_value(image, 0.0, 255.0)
    image.set_shape([image_size, image_size, 3])
    return image


def parse_chips(serialized: tf.Tensor) -> dict[str, tf.Tensor]:
    """Parses serialized chip records (scalar or batch) to image, id and label.

    A record without a label gets label -1.
    """
    if serialized.shape.rank == 0:
        return tf.io.parse_single_example(serialized, _FEATURES)
    return tf.io.parse_example(serialized, _FEATURES)


# --------------------------------------------------------------------------
# Shards and splits
# --------------------------------------------------------------------------


def expand_globs(patterns: str, what: str, example: str) -> tuple[str, ...]:
    """Expands comma-separated globs to a sorted tuple of files.

    Globs go through :func:`footprints.files.match_files`, so ``gs://``
    paths work as well.

    Args:
        patterns: One or more globs, comma-separated.
        what: What the files are, for the error message.
        example: An example glob, for the error message.

    Raises:
        InputError: if a glob matches no file.
    """
    files: set[str] = set()
    for pattern in (p.strip() for p in patterns.split(",") if p.strip()):
        matched = match_files(pattern)
        if not matched:
            raise InputError(
                f"no {what} match {pattern!r}; pass a glob such as {example!r} "
                "(quote it so the shell does not expand it)"
            )
        files.update(matched)
    if not files:
        raise InputError(f"no {what} in {patterns!r}; pass a glob such as {example!r}")
    return tuple(sorted(files))


def list_shards(patterns: str) -> tuple[str, ...]:
    """The chip shards matching comma-separated globs (see :func:`expand_globs`)."""
    return expand_globs(patterns, "chip shards", "chips/train-*.tfrecord*")


def record_dataset(files: tuple[str, ...], deterministic: bool = True) -> tf.data.Dataset:
    """Serialized records of all shards, read in parallel.

    Each shard is opened with its own compression (``.gz`` is GZIP), so a
    glob may mix plain and compressed shards.
    """
    compression = ["GZIP" if contracts.compression_of(f) == "gzip" else "" for f in files]
    paths = tf.data.Dataset.from_tensor_slices((list(files), compression))
    if not deterministic:
        paths = paths.shuffle(len(files), reshuffle_each_iteration=True)
    return paths.interleave(
        lambda path, comp: tf.data.TFRecordDataset(path, compression_type=comp),
        cycle_length=max(1, min(len(files), 8)),
        num_parallel_calls=AUTOTUNE,
        deterministic=deterministic,
    )


@dataclasses.dataclass(frozen=True)
class ChipSplit:
    """A set of shards and which of their records to use.

    Attributes:
        files: The shard files.
        subset: ``all``, or ``train``/``val`` to split the records by a
            stable hash of the footprint id.
        val_fraction: The fraction of footprint ids that go to ``val``.
    """

    files: tuple[str, ...]
    subset: str = "all"
    val_fraction: float = 0.0

    def __post_init__(self):
        if self.subset not in ("all", "train", "val"):
            raise ConfigError(f"subset {self.subset!r} must be all, train or val")
        if self.subset != "all" and not 0.0 < self.val_fraction < 1.0:
            raise ConfigError(
                f"val_fraction {self.val_fraction!r} must be between 0 and 1 (exclusive), "
                "for example 0.2"
            )

    def parsed(self, deterministic: bool = True) -> tf.data.Dataset:
        """Parsed records of this split.

        Each is a dict of image, id, label and the serialized record itself
        (``SERIALIZED``, for feeding an exported model).
        """

        def parse(serialized):
            return dict(parse_chips(serialized), **{SERIALIZED: serialized})

        ds = record_dataset(self.files, deterministic).map(
            parse, num_parallel_calls=AUTOTUNE, deterministic=deterministic
        )
        if self.subset == "all":
            return ds
        cut = int(round(self.val_fraction * _SPLIT_BUCKETS))
        want_val = self.subset == "val"

        def keep(record):
            bucket = tf.strings.to_hash_bucket_fast(record[contracts.ID_KEY], _SPLIT_BUCKETS)
            return tf.equal(bucket < cut, want_val)

        return ds.filter(keep)


@dataclasses.dataclass(frozen=True)
class LabelCounts:
    """What one pass over a split found.

    Attributes:
        records: All records in the split.
        per_class: Labelled, decodable records per class (0 and 1).
        unlabelled: Records without a label (skipped in training).
        undecodable: Labelled records whose image is not PNG or JPEG (skipped).
    """

    records: int
    per_class: dict[int, int]
    unlabelled: int
    undecodable: int

    @property
    def usable(self) -> int:
        """Records with a known class, the ones training can use."""
        return sum(self.per_class.values())

    def check(self, name: str, files: tuple[str, ...]) -> None:
        """Raises InputError if this split cannot be trained or validated on."""
        where = f"{len(files)} shard(s) such as {files[0]!r}"
        if self.records == 0:
            raise InputError(
                f"the {name} split is empty: {where} hold no chip records for it; "
                "check the glob, or lower --val-fraction if only validation is empty"
            )
        if self.usable == 0:
            raise InputError(
                f"the {name} split has {self.records} records but none with a label and a "
                f"PNG/JPEG image ({self.unlabelled} unlabelled, {self.undecodable} "
                "undecodable); write labels with `footprints prepare --labels ...`"
            )
        missing = [CLASS_NAMES[c] for c, n in sorted(self.per_class.items()) if n == 0]
        if missing:
            raise InputError(
                f"the {name} split has no {' or '.join(missing)} examples "
                f"(counts {self.named()}); a classifier needs both classes: add chips of "
                "the missing class or change the split"
            )

    def named(self) -> dict[str, int]:
        """Per-class counts keyed by class name."""
        return {CLASS_NAMES[c]: n for c, n in sorted(self.per_class.items())}

    def class_weights(self) -> dict[int, float]:
        """Weights that make both classes count equally in the loss.

        ``n / (2 * n_c)`` as in scikit-learn's ``balanced`` mode: a class with
        a tenth of the examples weighs ten times as much per example.
        """
        total = self.usable
        return {c: total / (len(self.per_class) * n) for c, n in self.per_class.items()}


def count_labels(split: ChipSplit) -> LabelCounts:
    """Reads a split once and counts its records by class.

    Raises:
        InputError: if a shard cannot be read or holds records that are not
            chip records.
    """

    def summarize(record):
        return record[contracts.LABEL_KEY], is_decodable(record[contracts.IMAGE_KEY])

    ds = split.parsed().map(summarize, num_parallel_calls=AUTOTUNE).batch(4096)
    labels, decodable = [], []
    try:
        for label, ok in ds.as_numpy_iterator():
            labels.append(label)
            decodable.append(ok)
    except (tf.errors.DataLossError, tf.errors.InvalidArgumentError) as exc:
        raise InputError(
            f"cannot read chip records from {len(split.files)} shard(s) such as "
            f"{split.files[0]!r}: {exc.message.splitlines()[0]}; are they TFRecord chip "
            "shards (named .tfrecord, or .tfrecord.gz when GZIP-compressed)?"
        ) from exc
    label = np.concatenate(labels) if labels else np.zeros(0, np.int64)
    ok = np.concatenate(decodable) if decodable else np.zeros(0, bool)
    labelled = label != _NO_LABEL
    bad = set(np.unique(label[labelled]).tolist()) - set(CLASS_NAMES)
    if bad:
        raise InputError(
            f"labels {sorted(bad)} in {split.files[0]!r} are not chip labels; use "
            f"{contracts.RESIDENTIAL} (residential) or {contracts.NON_RESIDENTIAL}"
        )
    use = labelled & ok
    return LabelCounts(
        records=int(label.size),
        per_class={c: int(np.sum(use & (label == c))) for c in sorted(CLASS_NAMES)},
        unlabelled=int(np.sum(~labelled)),
        undecodable=int(np.sum(labelled & ~ok)),
    )


# --------------------------------------------------------------------------
# The training dataset
# --------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class InputOptions:
    """How :func:`classifier_dataset` builds batches.

    Attributes:
        image_size: Model input height and width, pixels.
        batch_size: Examples per batch.
        augment: Random flips, rotations, brightness and contrast (training only).
        cache: ``memory``, ``none``, or a file path prefix for an on-disk cache
            of the decoded images (for sets larger than memory).
        shuffle_buffer: Examples in the shuffle buffer.
        seed: Shuffle seed.
    """

    image_size: int = 64
    batch_size: int = 32
    augment: bool = True
    cache: str = "memory"
    shuffle_buffer: int = 2048
    seed: int = 0


def apply_cache(ds: tf.data.Dataset, cache: str) -> tf.data.Dataset:
    """Caches ``ds`` in memory (``memory``), in files (a path), or not (``none``)."""
    if cache == "none":
        return ds
    return ds.cache("" if cache == "memory" else cache)


def classifier_dataset(
    split: ChipSplit, options: InputOptions, training: bool, count: int | None = None
) -> tf.data.Dataset:
    """Batches of ``(float32 image [B, S, S, 3] in 0..255, float32 label [B])``.

    Training datasets repeat forever (the trainer sets steps per epoch from
    :func:`count_labels`), are shuffled after the cache and augmented;
    validation datasets are read once, in order, without augmentation.
    Unlabelled and undecodable records are skipped (they were counted).
    ``count``, the usable records from :func:`count_labels`, gives the
    validation dataset a known length, so Keras knows where an epoch ends.
    """
    size = options.image_size

    def usable(record):
        return tf.logical_and(
            record[contracts.LABEL_KEY] != _NO_LABEL, is_decodable(record[contracts.IMAGE_KEY])
        )

    def to_example(record):
        image = fill_masked(
            decode_resize(record[contracts.IMAGE_KEY], size), record[contracts.MASK_KEY]
        )  # masked pixels carry no signal
        return image, tf.cast(record[contracts.LABEL_KEY], tf.float32)

    # Deterministic even for training: a reordered stream before the seeded
    # shuffle gives another model for the same seed (the demo once varied by
    # 0.43 in score between two runs of one seed).
    ds = (
        split.parsed()
        .filter(usable)
        .map(to_example, num_parallel_calls=AUTOTUNE, deterministic=True)
    )
    if count is not None:
        ds = ds.apply(tf.data.experimental.assert_cardinality(count))
    ds = apply_cache(ds, options.cache)
    if training:
        ds = ds.shuffle(
            options.shuffle_buffer, seed=options.seed, reshuffle_each_iteration=True
        ).repeat()
        if options.augment:
            # Sequential: stateful random ops give the same draws only in a fixed order.
            ds = ds.map(augment_example)
    return ds.batch(options.batch_size).prefetch(AUTOTUNE)


def augment_example(image: tf.Tensor, label: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    """Random D4 symmetry, brightness and contrast for one classifier example."""
    (image,) = aug.random_spatial([image])
    return aug.random_colour(image), label
