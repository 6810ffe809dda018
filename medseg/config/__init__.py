"""Pipeline configuration: pydantic schemas (unknown keys rejected) and YAML loading."""

from medseg.config.load import config_from_dict, dump_config, load_pipeline
from medseg.config.schema import (
    AugmentationConfig,
    DataConfig,
    InferenceConfig,
    LossConfig,
    ModelConfig,
    PipelineConfig,
    PreprocessingConfig,
    TrainingConfig,
)

__all__ = [
    "AugmentationConfig",
    "DataConfig",
    "InferenceConfig",
    "LossConfig",
    "ModelConfig",
    "PipelineConfig",
    "PreprocessingConfig",
    "TrainingConfig",
    "config_from_dict",
    "dump_config",
    "load_pipeline",
]
