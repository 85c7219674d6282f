"""Keras training of the footprint classifier and the U-Net segmenter."""
