"""Transforms: intensity (windowing, normalisation), and later spatial and augmentation."""
