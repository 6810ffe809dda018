"""One helper for optional dependencies, naming the extra that installs them."""

from __future__ import annotations

import importlib
from types import ModuleType

from medseg.errors import MissingDependencyError


def import_optional(module: str, extra: str, feature: str) -> ModuleType:
    """Import ``module`` or raise a :class:`MissingDependencyError` naming the extra.

    Args:
        module: Dotted module name, e.g. ``"onnxruntime"``.
        extra: The ``pip install medseg[extra]`` extra that provides it.
        feature: What the user asked for, for the message.
    """
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise MissingDependencyError(
            f"{feature} needs the package '{module.split('.')[0]}', which is not installed",
            hint=f"install it with: pip install 'medseg[{extra}]'",
        ) from exc
