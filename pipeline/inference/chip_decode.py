"""Decoding chip records for ONNX Runtime without TensorFlow.

The classifier's ONNX copy takes decoded chips (``images``: float32
``[N, S, S, 3]``, values 0..255, masked pixels filled). On the TensorFlow
runtime the SavedModel decodes them in its graph
(:func:`model_training.data.decode_resize` and
:func:`model_training.masking.fill_masked`); on ONNX Runtime this module
does the same steps in numpy, so a worker never imports TensorFlow (several
CPU seconds of start-up and a TensorFlow call per batch, issue 24):

1. parse the ``tf.train.Example`` with :mod:`footprints.example_proto`;
2. a record whose image is neither PNG nor JPEG (by its magic bytes, as
   :func:`model_training.data.is_decodable`) is *not decodable*: a zero image
   and ``valid`` False, so its score is NaN as on TensorFlow;
3. JPEG with libjpeg-turbo through ``simplejpeg``, set as TensorFlow sets
   libjpeg: the fast integer IDCT (``INTEGER_FAST``, TensorFlow's default)
   and fancy chroma upsampling, so the pixels are the same bytes; PNG with
   Pillow, converted as TensorFlow's ``decode_image(channels=3)`` does (grey
   repeated, alpha dropped, palettes expanded, 16 bits to their high byte);
4. TensorFlow's antialiased bilinear resize (``tf.image.resize(...,
   antialias=True)``, a triangle kernel widened by the downscale factor) as
   two small matrices per chip size, then the clip to 0..255; a chip already
   of the model's size is left as it is (the resize is the identity there);
5. the mask fill of :func:`model_training.masking.fill_masked`.

A record that cannot be decoded although it claims to be an image (a
damaged JPEG, a broken PNG or mask) raises :class:`ChipDecodeError`, the data
error on which :class:`pipeline.inference.handlers.ChipScoreHandler` splits a
batch until the record is alone and dead-letters it
(``model_rejected_record``), as TensorFlow's ``InvalidArgumentError`` on the
TensorFlow runtime. One difference: libjpeg-turbo's warnings (corrupt data it
would patch over, such as a truncated file) reject the record here, where
TensorFlow accepts a few of them.

``tests/test_chip_decode.py`` compares the arrays with TensorFlow's decoding
of the same bytes.
"""

from __future__ import annotations

import functools
import io
from collections.abc import Sequence
from typing import Any

import numpy as np

from footprints import contracts

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
JPEG_MAGIC = b"\xff\xd8\xff"
#: libpng's default weights for ``png_set_rgb_to_gray`` (what TensorFlow's
#: ``decode_png(channels=1)`` applies to an RGB mask), in 1/32768.
_GREY_WEIGHTS = (6968, 23434, 2366)


class ChipDecodeError(ValueError):
    """A record claims to hold an image (or a mask) that cannot be decoded."""


def _example_class() -> type:
    """The ``tf.train.Example`` message class, built by protobuf at run time."""
    from footprints import example_proto

    return example_proto.Example


def _png_array(data: bytes) -> np.ndarray:
    """A PNG's pixels as uint8 ``[H, W, C]`` as libpng gives them to TensorFlow."""
    from PIL import Image

    try:
        with Image.open(io.BytesIO(data), formats=["PNG"]) as opened:
            opened.load()
            mode = opened.mode
            if mode in ("P", "PA", "1"):  # palettes expanded, bits to 0 or 255, as libpng
                arr = np.asarray(opened.convert("RGB"))
            else:
                arr = np.asarray(opened)
    except Exception as exc:  # Pillow raises OSError, SyntaxError, ValueError...
        raise ChipDecodeError(f"the PNG does not decode: {exc}") from None
    if mode.startswith("I"):  # 16-bit grey: TensorFlow keeps the high byte (png_set_strip_16)
        arr = (arr.astype(np.uint32) >> 8).astype(np.uint8)
    if arr.ndim == 2:
        arr = arr[:, :, None]
    return arr


def _rgb(arr: np.ndarray) -> np.ndarray:
    """uint8 ``[H, W, C]`` (1 to 4 channels) as RGB: grey repeated, alpha dropped."""
    channels = arr.shape[2]
    if channels in (1, 2):
        return np.repeat(arr[:, :, :1], 3, axis=2)
    return arr[:, :, :3]


def _grey(arr: np.ndarray) -> np.ndarray:
    """uint8 ``[H, W, C]`` as one band, as libpng's default RGB-to-grey (alpha dropped)."""
    if arr.shape[2] in (1, 2):
        return arr[:, :, 0]
    r, g, b = (arr[:, :, i].astype(np.uint32) for i in range(3))
    wr, wg, wb = _GREY_WEIGHTS
    return ((wr * r + wg * g + wb * b + 16384) >> 15).astype(np.uint8)


@functools.lru_cache(maxsize=128)
def resize_weights(in_size: int, out_size: int) -> np.ndarray:
    """float32 ``[out_size, in_size]``: TensorFlow's antialiased bilinear resize along one axis.

    Each output pixel ``x`` samples the input at ``(x + 0.5) * in / out``
    with the triangle kernel, widened by ``in / out`` when shrinking
    (antialiasing), over the input pixels within its reach, and its weights
    are normalized to sum to 1 (``ScaleAndTranslate`` with ``kernel_type
    triangle``, zero translation).

    Example: ``resize_weights(4, 2)[0]`` is ``[3/7, 3/7, 1/7, 0]``: output
    pixel 0 samples at 1.0 with a triangle of half-width 2, which gives the
    input pixels centred at 0.5, 1.5 and 2.5 the weights 0.75, 0.75 and 0.25.
    """
    scale = np.float32(out_size) / np.float32(in_size)
    inv_scale = 1.0 / float(scale)
    kernel_scale = max(inv_scale, 1.0)
    weights = np.zeros((out_size, in_size), np.float64)
    for x in range(out_size):
        sample = (x + 0.5) * inv_scale
        if sample < 0 or sample > in_size:
            continue
        start = min(max(int(np.ceil(sample - kernel_scale - 0.5)), 0), in_size - 1)
        end = min(max(int(np.floor(sample + kernel_scale - 0.5)), 0), in_size - 1) + 1
        source = np.arange(start, end)
        w = np.maximum(0.0, 1.0 - np.abs((source + 0.5 - sample) / kernel_scale))
        total = w.sum()
        if abs(total) >= 1000 * np.finfo(np.float32).eps:
            w = w / total
        weights[x, start:end] = w
    return weights.astype(np.float32)


def resize(image: np.ndarray, size: int) -> np.ndarray:
    """float32 ``[H, W, C]`` to ``[size, size, C]``, antialiased bilinear as TensorFlow."""
    height, width = image.shape[:2]
    if height == width == size:
        return image
    rows = resize_weights(height, size)
    cols = resize_weights(width, size)
    out = np.tensordot(rows, image, axes=(1, 0))  # [size, W, C]
    resized: np.ndarray = np.matmul(cols, out)  # [size, W] @ [size, W, C] -> [size, size, C]
    return resized


def fill_masked(image: np.ndarray, mask_png: bytes) -> np.ndarray:
    """``image`` (float32 ``[S, S, 3]``) with masked pixels set to its valid pixels' mean."""
    if mask_png[: len(PNG_MAGIC)] != PNG_MAGIC:
        return image
    raw = _grey(_png_array(mask_png)).astype(np.float32) / np.float32(255.0)
    weight = resize(raw[:, :, None], image.shape[0])[:, :, 0]
    valid = (weight > np.float32(0.999)).astype(np.float32)[:, :, None]
    count = valid.sum(dtype=np.float32)
    if count <= 0:
        return image
    mean = (image * valid).sum(axis=(0, 1), dtype=np.float32) / np.maximum(count, np.float32(1))
    filled: np.ndarray = image * valid + mean * (np.float32(1) - valid)
    return filled


class ChipDecoder:
    """Decodes batches of serialized chip records to the ONNX classifier's input.

    Args:
        size: The model's input height and width, pixels.
    """

    def __init__(self, size: int) -> None:
        import simplejpeg

        self.size = size
        self._jpeg = simplejpeg
        self._example = _example_class()

    def _image(self, encoded: bytes, out: np.ndarray) -> None:
        """Decodes ``encoded`` (PNG or JPEG) into ``out`` (float32 ``[S, S, 3]``)."""
        size = self.size
        if encoded[:3] == JPEG_MAGIC:
            try:
                pixels = self._jpeg.decode_jpeg(
                    encoded, colorspace="RGB", fastdct=True, fastupsample=False
                )
            except Exception as exc:  # simplejpeg raises ValueError; be safe with others
                raise ChipDecodeError(f"the JPEG does not decode: {exc}") from None
        else:
            pixels = _rgb(_png_array(encoded))
        if pixels.shape[0] == pixels.shape[1] == size:
            out[...] = pixels
        else:
            out[...] = np.clip(resize(pixels.astype(np.float32), size), 0.0, 255.0)

    def __call__(self, records: Sequence[bytes]) -> tuple[np.ndarray, np.ndarray]:
        """float32 images ``[N, S, S, 3]`` and the "decodable" mask ``[N]`` of the records.

        Raises:
            ChipDecodeError: a record is not a ``tf.train.Example``, or its image
                or mask claims to be PNG or JPEG and does not decode.
        """
        size = self.size
        images = np.zeros((len(records), size, size, 3), np.float32)
        valid = np.zeros(len(records), bool)
        example = self._example()
        for i, record in enumerate(records):
            try:
                example.ParseFromString(record)
            except Exception as exc:  # protobuf's DecodeError
                raise ChipDecodeError(f"the record is not a tf.train.Example: {exc}") from None
            feature = example.features.feature
            encoded = _single_bytes(feature, contracts.IMAGE_KEY)
            mask = _single_bytes(feature, contracts.MASK_KEY)
            if encoded[:3] == JPEG_MAGIC or encoded[: len(PNG_MAGIC)] == PNG_MAGIC:
                valid[i] = True
                self._image(encoded, images[i])
                if mask:
                    images[i] = fill_masked(images[i], mask)
            elif mask:  # TensorFlow decodes the mask of a placeholder image too
                fill_masked(images[i], mask)
        return images, valid


def _single_bytes(feature: Any, key: str) -> bytes:
    """The one bytes value of ``key`` in a parsed Example's features ("" when absent)."""
    if key not in feature:
        return b""
    values = feature[key].bytes_list.value
    if len(values) != 1:
        raise ChipDecodeError(f"feature {key!r} must hold one bytes value, it holds {len(values)}")
    value: bytes = values[0]
    return value
