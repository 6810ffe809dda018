"""Preprocessing recorded with the model: reorient, crop, resample, normalise; and its inverse."""

from medseg.transforms.preprocess.plan import CaseRecord, Plan, PreprocessedCase

__all__ = ["CaseRecord", "Plan", "PreprocessedCase"]
