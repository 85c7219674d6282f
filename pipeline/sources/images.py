"""Chips from a folder of images sorted into class subfolders.

This is how the original notebooks held their data: ``images/house/*.jpg``,
``images/barn/*.jpg``. The folder name is the class; a mapping turns it into
the chip label. Images straight in the root folder are unlabelled (a set to
score rather than to train on).

Every image is fully decoded once here, so a truncated or non-image file is a
dead letter now rather than a crash inside a training step or a lost batch at
scoring. PNG and JPEG bytes are kept as they are (no second compression);
other formats (TIFF, BMP, WebP) are re-encoded as PNG, which the chip
contract requires.
"""

from __future__ import annotations

import io
import posixpath
from collections.abc import Callable

from footprints.contracts import Chip, ErrorRecord
from footprints.errors import Reason

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".webp")


def is_image_path(path: str) -> bool:
    """Whether ``path`` names an image file ``ChipsFromImages`` reads (by suffix)."""
    return path.lower().endswith(IMAGE_SUFFIXES)


def class_of(path: str, root: str) -> tuple[str, str | None]:
    """``(footprint id, class folder or None)`` of an image below ``root``.

    Example: root ``/data/images``, path ``/data/images/barn/b01.jpg`` ->
    ``("barn/b01.jpg", "barn")``.
    """
    rel = posixpath.relpath(path.replace("\\", "/"), root.replace("\\", "/").rstrip("/"))
    parts = rel.split("/")
    return rel, (parts[0] if len(parts) > 1 else None)


def image_chip(
    path: str,
    data: bytes,
    root: str,
    label_of: Callable[[str | None], int | None],
    size: int = 0,
) -> Chip | ErrorRecord:
    """Checks one image file and turns it into a :class:`Chip`.

    Args:
        path: The file's path.
        data: Its bytes.
        root: The images folder (ids are paths relative to it).
        label_of: Maps a class name (or None) to 1, 0 or None.
        size: If not 0, the image is resized to ``size`` x ``size`` and
            re-encoded as PNG.
    """
    from PIL import Image, UnidentifiedImageError

    fid, klass = class_of(path, root)
    try:
        with Image.open(io.BytesIO(data)) as opened:
            fmt = opened.format
            opened.load()  # a full decode: truncated files fail here, not later
            image: Image.Image = opened
            # Kept as they are only if already RGB or one band (the chip contract):
            # an RGBA or palette PNG is converted and re-encoded.
            keep = fmt in ("PNG", "JPEG") and not size and image.mode in ("RGB", "L")
            if image.mode not in ("RGB", "L"):
                image = image.convert("RGB")
            if not keep:
                if size:
                    image = image.resize((size, size), Image.Resampling.BILINEAR)
                buf = io.BytesIO()
                image.save(buf, format="PNG")
                data = buf.getvalue()
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        return ErrorRecord(
            path,
            fid,
            "read_image",
            Reason.UNDECODABLE_IMAGE,
            f"cannot decode the image ({exc}); re-export it as PNG or JPEG",
        )
    return Chip(footprint_id=fid, image=data, label=label_of(klass), region=None)
