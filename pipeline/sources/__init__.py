"""Sources: reading images, vector footprints, rasters and chip shards."""
