"""Chips from a folder of images in class subfolders (``pipeline.sources.images``)."""

import io

import numpy as np
import pytest
from PIL import Image
from raster_fixtures import decode_png

from footprints.contracts import Chip, ErrorRecord
from pipeline.sources.images import class_of, image_chip, is_image_path

LABELS = {"house": 1, "barn": 0}.get


def _image(fmt: str, mode: str = "RGB", size=(12, 10), seed=0) -> bytes:
    rng = np.random.default_rng(seed)
    channels = {"RGB": 3, "RGBA": 4, "L": 1}[mode]
    pixels = rng.integers(0, 255, (size[1], size[0], channels), dtype=np.uint8)
    image = Image.fromarray(pixels[..., 0] if mode == "L" else pixels, mode)
    buf = io.BytesIO()
    image.save(buf, format=fmt)
    return buf.getvalue()


@pytest.mark.parametrize(
    "path, expected",
    [("a/b.JPG", True), ("b.jpeg", True), ("t.tif", True), ("x.webp", True), ("notes.txt", False)],
)
def test_image_suffixes_are_recognised_case_insensitively(path, expected):
    assert is_image_path(path) is expected


def test_class_is_the_first_folder_below_the_root():
    assert class_of("/data/images/barn/b01.jpg", "/data/images/") == ("barn/b01.jpg", "barn")
    assert class_of("/data/images/house/old/h.png", "/data/images") == ("house/old/h.png", "house")
    assert class_of("/data/images/loose.png", "/data/images") == ("loose.png", None)
    assert class_of("C:\\imgs\\barn\\b.png", "C:\\imgs") == ("barn/b.png", "barn")


@pytest.mark.parametrize("fmt", ["PNG", "JPEG"])
def test_png_and_jpeg_bytes_are_kept_as_they_are(fmt):
    data = _image(fmt)
    chip = image_chip("/imgs/house/h.img", data, "/imgs", LABELS)
    assert isinstance(chip, Chip)
    assert chip.image == data and chip.footprint_id == "house/h.img" and chip.label == 1


def test_other_formats_and_modes_are_reencoded_as_png():
    tiff = _image("TIFF", seed=1)
    chip = image_chip("/imgs/barn/b.tif", tiff, "/imgs", LABELS)
    assert chip.image.startswith(b"\x89PNG") and chip.label == 0
    assert np.array_equal(decode_png(chip.image), np.asarray(Image.open(io.BytesIO(tiff))))
    rgba = image_chip("/imgs/barn/a.png", _image("PNG", "RGBA"), "/imgs", LABELS)
    assert decode_png(rgba.image).shape == (10, 12, 3)


def test_size_resizes_and_reencodes():
    chip = image_chip("/imgs/yurt/y.jpg", _image("JPEG"), "/imgs", LABELS, size=8)
    assert decode_png(chip.image).shape == (8, 8, 3)
    assert chip.label is None  # a class in neither list: unlabelled


def test_undecodable_and_truncated_images_are_dead_letters_with_the_fix():
    truncated = _image("PNG")[:60]
    for data in (b"not an image", truncated):
        err = image_chip("/imgs/house/bad.png", data, "/imgs", LABELS)
        assert isinstance(err, ErrorRecord)
        assert (err.source, err.record, err.stage, err.error) == (
            "/imgs/house/bad.png",
            "house/bad.png",
            "read_image",
            "undecodable_image",
        )
        assert "re-export it as PNG or JPEG" in err.message
