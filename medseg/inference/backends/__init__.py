"""Inference backends: one table (:data:`BACKENDS`), one module per engine."""

from medseg.inference.backends.registry import (
    BACKENDS,
    BackendRequest,
    BackendSpec,
    Precision,
    Runner,
    build_runner,
    resolve_backend,
)

__all__ = [
    "BACKENDS",
    "BackendRequest",
    "BackendSpec",
    "Precision",
    "Runner",
    "build_runner",
    "resolve_backend",
]
