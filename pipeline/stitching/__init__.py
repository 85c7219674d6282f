"""Stitching: put a tile's window predictions back together, write masks.

The windows themselves (pixel boxes, planning with a halo, block-aligned
read boxes, padding at tile edges) are :mod:`pipeline.windows`, and what
travels between the stages (cores, tile masks, the mask encoding)
:mod:`pipeline.values`, both on ``pipeline``'s ground floor.

* :mod:`pipeline.stitching.stitch` -- cropping a window's halo and assembling
  the cores of one tile into its mask;
* :mod:`pipeline.stitching.cog` -- writing a mask as a Cloud-Optimized
  GeoTIFF through a temporary name;
* :mod:`pipeline.stitching.vrt` -- the ``mosaic.vrt`` over all masks.

All plain functions, tested without Beam; :mod:`pipeline.writers.masks`
wraps them in transforms.
"""
