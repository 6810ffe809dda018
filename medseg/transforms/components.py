"""Connected components of binary masks: the lesions of lesion-wise sampling, losses and metrics.

One implementation (``cc3d``, connected-components-3d, Silversmith et al.) for everything that
splits a mask into lesions: :mod:`medseg.data.sampling` (lesion-weighted patch centres),
:mod:`medseg.losses.blob` (the blob loss term) and :mod:`medseg.evaluation.lesions`.
"""

from __future__ import annotations

import numpy as np

#: Allowed connectivities per number of dimensions (faces, edges, corners).
CONNECTIVITIES = {2: (4, 8), 3: (6, 18, 26)}


def connected_components(mask: np.ndarray, connectivity: int | None = None) -> tuple[np.ndarray, int]:
    """Label the connected components of a binary mask.

    Args:
        mask: 2D or 3D mask ``[X, Y]`` / ``[X, Y, Z]`` (non-zero: foreground).
        connectivity: 4 or 8 in 2D; 6, 18 or 26 in 3D; None: the full neighbourhood (8 in 2D,
            26 in 3D), as lesion-wise evaluation uses it (BraTS 2023).

    Returns:
        The component labels (same shape, unsigned integers, 0: background, 1..n) and n.

    Raises:
        ValueError: a mask that is not 2D or 3D, or a connectivity that does not apply to it.
    """
    import cc3d

    if mask.ndim not in CONNECTIVITIES:
        raise ValueError(f"connected components need a 2D or 3D mask, got {mask.ndim}D")
    conn = connectivity or CONNECTIVITIES[mask.ndim][-1]
    if conn not in CONNECTIVITIES[mask.ndim]:
        raise ValueError(
            f"connectivity {conn} does not apply to {mask.ndim}D masks "
            f"(use one of {', '.join(map(str, CONNECTIVITIES[mask.ndim]))})"
        )
    labels, n = cc3d.connected_components(np.ascontiguousarray(mask != 0), connectivity=conn, return_N=True)
    return labels, int(n)
