"""medseg: medical image segmentation with exact geometry.

The package root stays light: heavy modules (torch, SimpleITK, pydicom) are
imported only by the functions that need them, so ``import medseg`` and
``medseg --help`` are fast.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

__all__ = ["MedsegError", "Volume", "__version__", "list_series", "read_volume", "write_volume"]

if TYPE_CHECKING:  # pragma: no cover
    from medseg.errors import MedsegError
    from medseg.io import list_series, read_volume, write_volume
    from medseg.volume import Volume

_LAZY = {
    "MedsegError": "medseg.errors",
    "Volume": "medseg.volume",
    "read_volume": "medseg.io",
    "write_volume": "medseg.io",
    "list_series": "medseg.io",
}


def __getattr__(name: str) -> Any:
    module_name = _LAZY.get(name)
    if module_name is None:
        raise AttributeError(f"module 'medseg' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(module_name), name)
