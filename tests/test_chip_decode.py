"""Chip decoding without TensorFlow (issue 24): the same pixels as the model's graph.

Every array :class:`pipeline.inference.chip_decode.ChipDecoder` makes is
compared with TensorFlow's own decoding of the same bytes
(:func:`model_training.data.decode_resize` and
:func:`model_training.masking.fill_masked`, what the exported SavedModel
runs): exactly where no resize is needed, within float rounding where the
chip is resized or masked.
"""

from __future__ import annotations

import io

import numpy as np
import pytest
import score_helpers
from PIL import Image

from footprints import contracts
from pipeline.inference.chip_decode import ChipDecodeError, ChipDecoder, resize_weights

tf = pytest.importorskip("tensorflow")
SIZE = 24


def _scene(rng, height: int, width: int) -> np.ndarray:
    """A smooth RGB scene with grain (JPEG artefacts like real chips)."""
    coarse = Image.fromarray(rng.integers(0, 256, (4, 4, 3), dtype=np.uint8))
    smooth = np.asarray(coarse.resize((width, height), Image.Resampling.BILINEAR), np.int16)
    return np.clip(smooth + rng.integers(-15, 16, (height, width, 3)), 0, 255).astype(np.uint8)


def _encode(pixels: np.ndarray, mode: str, fmt: str, **kwargs) -> bytes:
    buf = io.BytesIO()
    image = Image.fromarray(pixels)
    if mode == "I;16":  # 16-bit grey: spread the 8-bit values over 16 bits, low byte noisy
        grey = np.asarray(image.convert("L"), np.uint16)
        image = Image.fromarray((grey * 257 + 91).astype(np.uint16))
    elif mode != "RGB":
        image = image.convert(mode)
    image.save(buf, format=fmt, **kwargs)
    return buf.getvalue()


def _images(height: int, width: int) -> dict[str, bytes]:
    rng = np.random.default_rng(height * 1000 + width)
    pixels = _scene(rng, height, width)
    return {
        "jpeg 4:2:0": _encode(pixels, "RGB", "JPEG", quality=90),
        "jpeg 4:4:4": _encode(pixels, "RGB", "JPEG", quality=75, subsampling=0),
        "jpeg 4:2:2 q50": _encode(pixels, "RGB", "JPEG", quality=50, subsampling=1),
        "jpeg grey": _encode(pixels, "L", "JPEG", quality=85),
        "png rgb": _encode(pixels, "RGB", "PNG"),
        "png rgba": _encode(pixels, "RGBA", "PNG"),
        "png grey": _encode(pixels, "L", "PNG"),
        "png grey+alpha": _encode(pixels, "LA", "PNG"),
        "png palette": _encode(pixels, "P", "PNG"),
        "png 1-bit": _encode(pixels, "1", "PNG"),
        "png 16-bit grey": _encode(pixels, "I;16", "PNG"),
    }


def _tf_decode(encoded: bytes, mask: bytes = b"") -> np.ndarray:
    from model_training import data
    from model_training.masking import fill_masked

    return fill_masked(data.decode_resize(tf.constant(encoded), SIZE), tf.constant(mask)).numpy()


def _ours(encoded: bytes, mask: bytes | None = None) -> tuple[np.ndarray, bool]:
    record = contracts.encode_chip(contracts.Chip("fp", encoded, mask=mask))
    images, valid = ChipDecoder(SIZE)([record])
    return images[0], bool(valid[0])


def test_resize_weights_match_a_worked_example():
    # Shrinking 4 -> 2: output pixel 0 samples at 1.0 with a triangle of half-width 2
    # (antialiasing), reaching the pixels centred at 0.5, 1.5, 2.5 (|d| = .5, .5, 1.5):
    # weights .75, .75, .25, normalized by 1.75.
    np.testing.assert_allclose(resize_weights(4, 2)[0], [3 / 7, 3 / 7, 1 / 7, 0], atol=1e-7)
    # Growing 2 -> 4: output pixel 1 samples at 0.75, between pixels 0 (0.5) and 1 (1.5).
    np.testing.assert_allclose(resize_weights(2, 4)[1], [0.75, 0.25], atol=1e-7)
    np.testing.assert_array_equal(resize_weights(5, 5), np.eye(5, dtype=np.float32))


@pytest.mark.parametrize("kind", sorted(_images(SIZE, SIZE)))
def test_a_chip_of_the_models_size_decodes_to_tensorflows_pixels_exactly(kind):
    encoded = _images(SIZE, SIZE)[kind]
    got, valid = _ours(encoded)
    want = _tf_decode(encoded)
    assert valid and got.dtype == np.float32 and got.shape == (SIZE, SIZE, 3)
    np.testing.assert_array_equal(got, want)
    assert np.ptp(got) > 50  # a real scene, not a blank: the comparison can fail


@pytest.mark.parametrize("shape", [(40, 40), (16, 16), (33, 20)])
@pytest.mark.parametrize("kind", ["jpeg 4:2:0", "png rgb", "png grey"])
def test_a_resized_chip_matches_tensorflows_antialiased_resize(kind, shape):
    encoded = _images(*shape)[kind]
    got, _ = _ours(encoded)
    np.testing.assert_allclose(got, _tf_decode(encoded), atol=2e-3, rtol=0)


@pytest.mark.parametrize("shape", [(SIZE, SIZE), (40, 40)])
def test_masked_pixels_are_filled_as_tensorflow_fills_them(shape):
    encoded = _images(*shape)["jpeg 4:2:0"]
    mask = np.full(shape, 255, np.uint8)
    mask[: shape[0] // 3, :] = 0  # a nodata band along the top
    mask[:, -3:] = 0
    mask_png = _encode(np.repeat(mask[:, :, None], 3, axis=2), "L", "PNG")
    got, _ = _ours(encoded, mask_png)
    want = _tf_decode(encoded, mask_png)
    np.testing.assert_allclose(got, want, atol=2e-3, rtol=0)
    unmasked, _ = _ours(encoded)
    assert np.abs(got - unmasked).max() > 10  # the fill changed pixels: the test can fail


def test_a_record_that_is_not_an_image_is_not_decodable():
    images, valid = ChipDecoder(SIZE)(
        [
            contracts.encode_chip(contracts.Chip("gif", b"GIF89a not a chip")),
            score_helpers.chip_record("ok", 120),
        ]
    )
    assert valid.tolist() == [False, True]
    assert not images[0].any() and images[1].any()


@pytest.mark.parametrize(
    "damage",
    [
        lambda b: b[:300],  # cut short
        lambda b: b[: len(b) * 2 // 3],  # cut in the middle of the scan
        lambda b: b"\x89PNG\r\n\x1a\n" + b[8:],  # a JPEG claiming to be a PNG
    ],
)
def test_a_damaged_image_raises_where_tensorflow_rejects_it(damage):
    broken = damage(_images(64, 64)["jpeg 4:2:0"])
    with pytest.raises(tf.errors.InvalidArgumentError):
        _tf_decode(broken)
    with pytest.raises(ChipDecodeError):
        _ours(broken)
