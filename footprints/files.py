"""Listing the files a glob matches, on local disk or any Beam filesystem.

Every command takes globs (``--rasters 'area/tiles/*.tif'``, ``--chips
'gs://bucket/chips/train-*'``) and checks them before a job starts, and the
trainers read through the same globs. :func:`match_files` is the one way to
list them, through Beam's ``FileSystems``, so ``gs://`` (with the ``gcp``
extra) works wherever a local path does and every caller sees the same
answer: files only, sorted, ``*`` not crossing ``/`` and ``**`` crossing it.

Beam is imported inside the function, so importing this module stays cheap
(``footprints --help`` imports neither Beam nor TensorFlow).
"""

from __future__ import annotations

__all__ = ["match_files"]


def match_files(pattern: str) -> list[str]:
    """The files ``pattern`` matches, sorted; ``[]`` when none (or no such folder).

    Args:
        pattern: A glob or a plain path, local or any Beam filesystem
            (``gs://...``). ``*`` and ``?`` stay within one folder level;
            ``**`` matches any depth.

    Example::

        match_files("area/tiles/*.tif")  # ['area/tiles/t_0_0.tif', ...]
    """
    from apache_beam.io.filesystem import BeamIOError
    from apache_beam.io.filesystems import FileSystems

    try:
        (result,) = FileSystems.match([pattern])
    except BeamIOError:  # Beam raises it for a folder that does not exist
        return []
    return sorted(m.path for m in result.metadata_list)
