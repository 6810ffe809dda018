"""FCN family: ``fcn`` (FCN-32s/16s/8s through its ``variant``) on a VGG-style encoder, 2D and 3D."""

from medseg.models.fcn.model import FCN, FCNParams, FCNVariant, build_fcn

__all__ = ["FCN", "FCNParams", "FCNVariant", "build_fcn"]
