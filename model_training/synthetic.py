"""Small generated chip sets for tests, benchmarks and trying the trainer out.

:func:`synthetic_chip` draws a top-down chip whose class is visible: a
residential chip is a small, warm-coloured (red/brown) roof on grass, a
non-residential one a large grey or blue roof on pavement. Position, size,
colour and noise vary, so a model must learn the pattern rather than memorize
pixels. :func:`write_chip_shards` writes such chips as contract chip records
in correctly named TFRecord shards.

This is separable on purpose, to test that training learns; the realistic,
overlapping sample area lives in :mod:`footprints_app.sample_area`.
"""

from __future__ import annotations

import io
import os

import numpy as np
from PIL import Image

from footprints import contracts


def synthetic_chip(rng: np.random.Generator, label: int, size: int = 48) -> np.ndarray:
    """One uint8 RGB chip ``[size, size, 3]`` of the given class."""
    if label == contracts.RESIDENTIAL:
        ground = np.array([70, 120, 60]) + rng.integers(-15, 16, 3)
        roof = np.array([160, 70, 50]) + rng.integers(-25, 26, 3)
        extent = rng.uniform(0.25, 0.45)
    else:
        ground = np.array([110, 110, 110]) + rng.integers(-15, 16, 3)
        roof = (
            np.array([200, 200, 205]) if rng.random() < 0.5 else np.array([70, 90, 150])
        ) + rng.integers(-20, 21, 3)
        extent = rng.uniform(0.55, 0.85)
    image = np.empty((size, size, 3), np.float64)
    image[:] = ground
    h = max(2, int(size * extent * rng.uniform(0.8, 1.2)))
    w = max(2, int(size * extent * rng.uniform(0.8, 1.2)))
    h, w = min(h, size), min(w, size)
    top = rng.integers(0, size - h + 1)
    left = rng.integers(0, size - w + 1)
    image[top : top + h, left : left + w] = roof
    image += rng.normal(0, 8, image.shape)
    return np.clip(image, 0, 255).astype(np.uint8)


def encode_image(image: np.ndarray, fmt: str = "png") -> bytes:
    """PNG or JPEG bytes of a uint8 ``[H, W]`` or ``[H, W, 3]`` array."""
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="PNG" if fmt == "png" else "JPEG", quality=90)
    return buffer.getvalue()


def write_chip_shards(
    out_dir: str,
    count: int,
    seed: int = 0,
    size: int = 48,
    num_shards: int = 2,
    prefix: str = "chips",
    compression: str = "none",
    positive_fraction: float = 0.5,
    formats: tuple[str, ...] = ("png",),
    grey_fraction: float = 0.0,
    region: str | None = None,
) -> list[str]:
    """Writes ``count`` synthetic chip records to ``num_shards`` shards.

    Args:
        out_dir: Folder for the shards (created).
        count: Records in all.
        seed: Random seed; the same seed writes the same bytes.
        size: Chip height and width.
        num_shards: Shards to spread the records over (round robin).
        prefix: Shard file name prefix.
        compression: ``none`` or ``gzip``.
        positive_fraction: Fraction of residential chips.
        formats: Image encodings to cycle through (``png``, ``jpeg``).
        grey_fraction: Fraction of chips stored as one-band grey images.
        region: Region key written to every record, or None.

    Returns:
        The shard paths.
    """
    import tensorflow as tf

    rng = np.random.default_rng(seed)
    os.makedirs(out_dir, exist_ok=True)
    paths = [
        os.path.join(out_dir, contracts.shard_name(prefix, i, num_shards, compression))
        for i in range(num_shards)
    ]
    options = tf.io.TFRecordOptions(compression_type="GZIP" if compression == "gzip" else "")
    writers = [tf.io.TFRecordWriter(p, options) for p in paths]
    try:
        for i in range(count):
            label = int(rng.random() < positive_fraction)
            image = synthetic_chip(rng, label, size)
            if rng.random() < grey_fraction:
                image = image.mean(axis=2).astype(np.uint8)
            chip = contracts.Chip(
                footprint_id=f"fp-{seed}-{i:06d}",
                image=encode_image(image, formats[i % len(formats)]),
                region=region,
                label=label,
            )
            writers[i % num_shards].write(contracts.encode_chip(chip))
    finally:
        for writer in writers:
            writer.close()
    return paths
