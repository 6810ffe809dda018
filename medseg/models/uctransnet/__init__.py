"""UCTransNet family (``uctransnet``): U-Net with channel-wise transformer skip connections."""

from medseg.models.uctransnet.cct import ChannelTransformer
from medseg.models.uctransnet.model import CCA, UCTransNet, UCTransNetParams, build_uctransnet

__all__ = ["CCA", "ChannelTransformer", "UCTransNet", "UCTransNetParams", "build_uctransnet"]
