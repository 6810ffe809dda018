"""PSPNet family: ``pspnet``, a dilated residual encoder with a pyramid pooling module, 2D and 3D."""

from medseg.models.pspnet.model import PSPNet, PSPNetParams, PyramidPooling, build_pspnet

__all__ = ["PSPNet", "PSPNetParams", "PyramidPooling", "build_pspnet"]
