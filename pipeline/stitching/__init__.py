"""Stitching: plan a tile's model windows, put their predictions back together, write masks.

* :mod:`pipeline.stitching.windows` -- pixel boxes, window planning with a
  halo, block-aligned read boxes and numpy padding at tile edges;
* :mod:`pipeline.stitching.stitch` -- cropping a window's halo and assembling
  the cores of one tile into its mask;
* :mod:`pipeline.stitching.cog` -- writing a mask as a Cloud-Optimized
  GeoTIFF through a temporary name;
* :mod:`pipeline.stitching.vrt` -- the ``mosaic.vrt`` over all masks.

All plain functions, tested without Beam; :mod:`pipeline.writers.masks`
wraps them in transforms.
"""
