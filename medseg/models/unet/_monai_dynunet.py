"""The ``dynunet`` network class: MONAI's ``DynUNet`` with medseg's deep-supervision contract.

Kept apart from :mod:`medseg.models.unet.dynunet` because importing MONAI costs seconds:
this module is imported only when a ``dynunet`` is built (or ``DynUNet`` is asked for), so
``import medseg.models`` and the prediction of other networks never load MONAI.
"""

from __future__ import annotations

import torch
from monai.networks.nets import DynUNet as _MonaiDynUNet

__all__ = ["DynUNet"]

_EMPTY = torch.empty(0)


class DynUNet(_MonaiDynUNet):
    """MONAI ``DynUNet`` whose training-mode deep-supervision output is a list of
    ``[full_res, aux1, ...]`` at their own resolutions (coarser last)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor | list[torch.Tensor]:
        out = self.output_block(self.skip_layers(x))
        if self.training and self.deep_supervision:
            aux = list(self.heads)
            # the skip layers write into this shared list; empty it so it does not keep the graph alive
            for i in range(len(self.heads)):
                self.heads[i] = _EMPTY
            return [out, *aux]
        return out
