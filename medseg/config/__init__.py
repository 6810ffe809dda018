"""Pipeline configuration: pydantic schemas (unknown keys rejected) and YAML loading."""

from medseg.config.load import dump_config, load_pipeline
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
    "dump_config",
    "load_pipeline",
]
