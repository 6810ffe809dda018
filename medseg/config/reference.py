"""Generate the pipeline configuration reference (docs/configuration.md) from the schema itself."""

from __future__ import annotations

import enum
import typing
from typing import Any

from pydantic import BaseModel
from pydantic_core import PydanticUndefined

from medseg.config.schema import (
    AugmentationConfig,
    CRFConfig,
    DataConfig,
    InferenceConfig,
    LossConfig,
    ModelConfig,
    PipelineConfig,
    PreprocessingConfig,
    RegionConfig,
    TrainingConfig,
)

SECTIONS: list[tuple[str, type[BaseModel]]] = [
    ("(top level)", PipelineConfig),
    ("regions[]", RegionConfig),
    ("data", DataConfig),
    ("preprocessing", PreprocessingConfig),
    ("model", ModelConfig),
    ("loss", LossConfig),
    ("augmentation", AugmentationConfig),
    ("training", TrainingConfig),
    ("inference", InferenceConfig),
    ("postprocessing.crf", CRFConfig),
]


def _type_name(annotation: Any) -> str:
    if isinstance(annotation, type) and issubclass(annotation, enum.Enum):
        return " \\| ".join(f"`{m.value}`" for m in annotation)
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return "section"
    origin = typing.get_origin(annotation)
    if origin is None:
        return getattr(annotation, "__name__", str(annotation)).replace("NoneType", "null")
    args = [a for a in typing.get_args(annotation)]
    if origin in (typing.Union, getattr(__import__("types"), "UnionType", None)):
        return " or ".join(_type_name(a) for a in args)
    if origin is typing.Literal:
        return " \\| ".join(f"`{a}`" for a in args)
    return f"{origin.__name__}[{', '.join(_type_name(a) for a in args)}]"


def _default(field: Any) -> str:
    if field.default is PydanticUndefined and field.default_factory is None:
        return "**required**"
    value = field.default_factory() if field.default_factory is not None else field.default
    if isinstance(value, BaseModel):
        return "(section defaults)"
    if isinstance(value, enum.Enum):
        value = value.value
    return f"`{value!r}`".replace("None", "null").replace("True", "true").replace("False", "false")


def configuration_reference() -> str:
    """Markdown tables of every section and key of a pipeline YAML file."""
    lines = [
        "# Pipeline configuration reference",
        "",
        "Generated from `medseg/config/schema.py` by `python -m medseg.config.reference > "
        "docs/configuration.md`; a test fails when this file is out of date. Unknown keys are errors. "
        "Relative paths in `data` are relative to the YAML file's folder. Any key can be overridden on the "
        "command line: `medseg train PIPELINE --set training.epochs=50 --set model.params.features=[8,16]`.",
        "",
    ]
    for name, model in SECTIONS:
        lines += [
            f"## `{name}`",
            "",
            (model.__doc__ or "").strip().splitlines()[0],
            "",
            "| key | type | default | meaning |",
            "|---|---|---|---|",
        ]
        for key, field in model.model_fields.items():
            desc = (field.description or "").replace("|", "\\|")
            lines.append(f"| `{key}` | {_type_name(field.annotation)} | {_default(field)} | {desc} |")
        lines.append("")
    return "\n".join(lines)


if __name__ == "__main__":
    import sys

    sys.stdout.write(configuration_reference())
