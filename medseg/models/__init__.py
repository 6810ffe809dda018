"""Segmentation networks behind one registry: U-Net, dynamic U-Net, UCTransNet, DeepLabV3/V3+, 2D and 3D.

Build a network by registry name::

    from medseg.models import build_model
    model = build_model("uctransnet", spatial_dims=3, in_channels=1, out_channels=3, transformer_layers=2)

Every model takes any number of input channels and classes and any input size:
inputs are padded internally to :func:`required_divisor` per axis and the
logits cropped back. ``model.medseg_config`` holds everything needed to
rebuild it; :func:`save_model` / :func:`load_model` store and restore a model
with its config. ``medseg models`` lists the registry.
"""

from __future__ import annotations

from medseg.models._params import Act, ModelParams, Norm
from medseg.models._wrapper import SegmentationModel
from medseg.models.factory import (
    build_from_config,
    build_model,
    count_parameters,
    describe_models,
    get_spec,
    list_models,
    parameter_count,
    required_divisor,
    validate_params,
)
from medseg.models.registry import MODELS, ModelSpec, ParamSpec
from medseg.models.serialization import MODEL_FORMAT, load_model, save_model

__all__ = [
    "MODELS",
    "MODEL_FORMAT",
    "Act",
    "ModelParams",
    "ModelSpec",
    "Norm",
    "ParamSpec",
    "SegmentationModel",
    "build_from_config",
    "build_model",
    "count_parameters",
    "describe_models",
    "get_spec",
    "list_models",
    "load_model",
    "parameter_count",
    "required_divisor",
    "save_model",
    "validate_params",
]
