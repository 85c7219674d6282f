"""Test helpers for scoring: real contract classifiers and real chip shards.

Two classifiers that meet the classifier contract (``serving_default``:
``examples`` tf.string [None] -> ``score`` float32 [None]), both parsing the
records with ``tf.io.parse_example`` and decoding the image in the graph:

* ``brightness``: score = mean pixel value / 255. Tests control scores
  exactly through the chip colour: black gives exactly 0.0, white exactly
  1.0 (saturated), and the 256 grey levels give heavy ties.
* ``broken``: like ``brightness`` but returns one score too many, which
  the static signature check cannot see; the job must fail, not dead-letter.
* ``scaled``: 4 x brightness, NaN for a black chip: a model without its
  final sigmoid, whose scores leave [0, 1] (a grey level above 63 scores
  above 1).
* ``logit``: 10 x brightness + 2, outside [0, 1] for every chip.
* ``convnet``: resize to ``size`` and a small fixed-weight conv net with a
  sigmoid; costs about what a small production classifier costs per chip,
  for the benchmark.
"""

from __future__ import annotations

import io
import os

import numpy as np

from footprints import contracts


def _build_module(kind: str, size: int, seed: int):
    import tensorflow as tf

    class ChipClassifier(tf.Module):
        def __init__(self):
            super().__init__()
            rng = np.random.default_rng(seed)
            self.kernels = [
                tf.Variable(rng.normal(0, 0.3, (3, 3, cin, cout)).astype("float32"))
                for cin, cout in ((3, 16), (16, 32), (32, 64))
            ]
            self.dense = tf.Variable(rng.normal(0, 0.3, (64, 1)).astype("float32"))
            self.offset = tf.Variable(0.0)

        def _brightness(self, encoded):
            image = tf.io.decode_image(encoded, channels=3, expand_animations=False)
            return tf.reduce_mean(tf.cast(image, tf.float32)) / 255.0

        def _pixels(self, encoded):
            image = tf.io.decode_image(encoded, channels=3, expand_animations=False)
            image = tf.image.resize(tf.cast(image, tf.float32), (size, size))
            return image / 255.0

        @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="examples")])
        def serve(self, examples):
            parsed = tf.io.parse_example(
                examples, {contracts.IMAGE_KEY: tf.io.FixedLenFeature([], tf.string)}
            )
            encoded = parsed[contracts.IMAGE_KEY]
            if kind in ("brightness", "broken", "scaled", "logit"):
                score = tf.map_fn(
                    self._brightness, encoded, fn_output_signature=tf.TensorSpec([], tf.float32)
                )
                if kind == "scaled":  # 0/0 is NaN for a black chip
                    score = 4.0 * score * (score / score)
                if kind == "logit":
                    score = 10.0 * score + 2.0
                if kind == "broken":  # one score too many: meets the signature, not the contract
                    score = tf.concat([score, [0.5]], axis=0)
            else:
                x = tf.map_fn(
                    self._pixels,
                    encoded,
                    fn_output_signature=tf.TensorSpec([size, size, 3], tf.float32),
                )
                for kernel in self.kernels:
                    x = tf.nn.relu(tf.nn.conv2d(x, kernel, strides=2, padding="SAME"))
                x = tf.reduce_mean(x, axis=[1, 2])
                score = tf.sigmoid(tf.squeeze(tf.matmul(x, self.dense), axis=1) - 1.0)
            if kind == "offset":  # reads a variable a user may change after loading
                score = score + self.offset
            if kind == "counting":  # a model that writes a variable: it cannot be frozen
                self.dense.assign_add(tf.zeros_like(self.dense))
            return {contracts.CLASSIFIER_OUTPUT: tf.cast(score, tf.float32)}

    return ChipClassifier()


def save_classifier(
    path: str,
    kind: str = "brightness",
    size: int = 64,
    seed: int = 0,
    output_name: str = contracts.CLASSIFIER_OUTPUT,
) -> str:
    """Saves a contract classifier SavedModel to ``path``; returns ``path``.

    ``output_name`` other than ``score`` gives a TFX-style model whose output
    has another name (it then fails the plain contract, as TFX models may).
    """
    import tensorflow as tf

    module = _build_module(kind, size, seed)
    fn = module.serve
    if output_name != contracts.CLASSIFIER_OUTPUT:
        inner = module.serve

        @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="examples")])
        def renamed(examples):
            return {output_name: inner(examples)[contracts.CLASSIFIER_OUTPUT]}

        module.renamed = renamed
        fn = renamed
    tf.saved_model.save(module, path, signatures={contracts.SIGNATURE: fn})
    return path


def png(value: int, size: int = 8, noise_seed: int | None = None) -> bytes:
    """A PNG chip; solid grey ``value`` (0-255), or noisy RGB when ``noise_seed`` is set."""
    from PIL import Image

    if noise_seed is None:
        pixels = np.full((size, size, 3), value, dtype=np.uint8)
    else:
        rng = np.random.default_rng(noise_seed)
        pixels = rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format="PNG")
    return buf.getvalue()


def bomb_png(width: int, height: int) -> bytes:
    """A valid RGB PNG of ``width`` x ``height`` black pixels, compressed as far as zlib goes.

    What a decompression bomb looks like: 20000 x 20000 is 1.1 MiB on disk and
    1.2 GB decoded. Written row block by row block, never holding the pixels.
    """
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    compressor = zlib.compressobj(9)
    row = bytes(1 + 3 * width)  # filter byte 0, then the row's RGB bytes
    parts = []
    for start in range(0, height, 64):
        parts.append(compressor.compress(row * min(64, height - start)))
    parts.append(compressor.flush())
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", b"".join(parts))
        + chunk(b"IEND", b"")
    )


def jpeg(value: int, size: int = 8, declared: tuple[int, int] | None = None) -> bytes:
    """A JPEG chip of solid grey ``value``.

    ``declared`` rewrites the size its frame header states, as a bomb would.
    """
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (size, size), (value, value, value)).save(buf, format="JPEG")
    data = bytearray(buf.getvalue())
    if declared is not None:
        sof = data.index(b"\xff\xc0")  # baseline start-of-frame: length, precision, H, W
        data[sof + 5 : sof + 9] = declared[1].to_bytes(2, "big") + declared[0].to_bytes(2, "big")
    return bytes(data)


def with_raw_features(record: bytes, **features: bytes) -> bytes:
    """``record`` with bytes features replaced as they arrive from other systems.

    Keyword names use ``__`` for ``/``: ``footprint__wkb=b"..."`` sets
    ``footprint/wkb``. The bytes go in unchecked (not UTF-8, not WKB, ...),
    through the project's own ``tf.train.Example`` messages.
    """
    from footprints import example_proto

    example = example_proto.Example()
    example.ParseFromString(record)
    for name, value in features.items():
        feature = example.features.feature[name.replace("__", "/")]
        del feature.bytes_list.value[:]
        feature.bytes_list.value.append(value)
    return example.SerializeToString(deterministic=True)


def chip_record(footprint_id: str, value: int, region: str | None = None, **kwargs) -> bytes:
    """A serialized chip record with a solid-grey PNG of brightness ``value``."""
    return contracts.encode_chip(
        contracts.Chip(footprint_id=footprint_id, image=png(value), region=region, **kwargs)
    )


def write_shards(
    directory: str,
    records: list[bytes],
    num_shards: int = 2,
    compression: str = "none",
    prefix: str = "chips",
) -> list[str]:
    """Writes records round-robin into contract-named TFRecord shards."""
    import tensorflow as tf

    os.makedirs(directory, exist_ok=True)
    paths = [
        os.path.join(
            directory, os.path.basename(contracts.shard_name(prefix, i, num_shards, compression))
        )
        for i in range(num_shards)
    ]
    options = tf.io.TFRecordOptions(compression_type="GZIP" if compression == "gzip" else "")
    writers = [tf.io.TFRecordWriter(p, options) for p in paths]
    for i, record in enumerate(records):
        writers[i % num_shards].write(record)
    for w in writers:
        w.close()
    return paths


def save_onnx_brightness_classifier(path: str, size: int = 16) -> str:
    """A Keras brightness classifier exported as `footprints train` does, with its ONNX copy.

    The score rises with the chip's mean brightness (fixed weights, nothing trained), so
    equal images tie as with :func:`save_classifier`'s ``brightness`` kind; the folder holds
    ``model.onnx`` and its card entry, so ``--runtime auto`` serves it with ONNX Runtime.
    """
    import keras

    from model_training.export import export_classifier

    inputs = keras.Input((size, size, 3))
    x = keras.layers.Rescaling(1 / 255.0)(inputs)
    x = keras.layers.GlobalAveragePooling2D()(x)
    dense = keras.layers.Dense(1, activation="sigmoid")
    outputs = dense(x)
    model = keras.Model(inputs, outputs)
    dense.set_weights([np.full((3, 1), 4.0 / 3, np.float32), np.array([-2.0], np.float32)])
    export_classifier(model, path, size)
    return with_onnx_copy(path)


def with_onnx_copy(model_dir: str) -> str:
    """Writes ``model_dir``'s ONNX copy and card entry (``footprints convert onnx``); returns it."""
    from model_training import onnx_export

    onnx_export.update_card(model_dir, onnx_export.export_beside(model_dir))
    return model_dir
