"""ENet family: ``enet``, an efficient encoder-decoder with max-unpooling, registered for 2D."""

from medseg.models.enet.model import (
    AsymmetricConv,
    Bottleneck,
    DownsamplingBottleneck,
    ENet,
    ENetParams,
    InitialBlock,
    UpsamplingBottleneck,
    build_enet,
    max_unpool,
)

__all__ = [
    "AsymmetricConv",
    "Bottleneck",
    "DownsamplingBottleneck",
    "ENet",
    "ENetParams",
    "InitialBlock",
    "UpsamplingBottleneck",
    "build_enet",
    "max_unpool",
]
