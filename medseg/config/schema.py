"""The schema of a pipeline YAML file (``pipelines/*.yaml``).

Every section is a pydantic model with ``extra="forbid"``: a misspelt key is
an error that names the key and the section, never silently ignored.
Objects (model, loss) are chosen by registry name, never by import path.
"""

from __future__ import annotations

from collections.abc import Iterable
from enum import Enum
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class Normalization(str, Enum):
    """Intensity normalisation applied by the preprocessing plan."""

    ZSCORE = "zscore"  # MR: z-score over the foreground of each case
    CT = "ct"  # CT: clip to dataset percentiles (0.5, 99.5) of foreground HU, then dataset z-score
    WINDOW = "window"  # CT: a named or custom HU window, scaled to [0, 1]
    PERCENTILE = "percentile"  # clip each case to its own percentiles, then scale to [0, 1]
    NONE = "none"


class DataConfig(_Strict):
    """Where the cases come from."""

    manifest: str = Field(
        description="MSD dataset.json or a medseg manifest (JSON/YAML); relative "
        "paths resolve against --data-root / $MEDSEG_DATA_ROOT, else the file's folder"
    )
    data_root: str | None = Field(None, description="folder that relative paths in the manifest start from")
    val_fraction: float = Field(
        0.2,
        ge=0.0,
        lt=1.0,
        description="share of cases held out for validation "
        "when the manifest gives no split and no fold is chosen",
    )
    folds: int = Field(5, ge=2, le=20, description="number of folds for --fold k cross-validation")
    cache_dir: str | None = Field(None, description="preprocessed-case cache (default: ~/.cache/medseg)")
    channels: list[str] | None = Field(
        None,
        min_length=1,
        description="the input channel names in order, as the manifest must declare them; training "
        "refuses a manifest whose channels differ (compared ignoring case; default: no check)",
    )


class PreprocessingConfig(_Strict):
    """Recorded with the model; prediction replays it exactly."""

    orientation: str = Field("RAS", description="canonical orientation every case is reoriented to")
    target_spacing: list[float] | str | None = Field(
        "median", description="mm per axis, 'median' (dataset median, as nnU-Net) or null (keep)"
    )
    normalization: Normalization | list[Normalization] = Field(
        Normalization.ZSCORE,
        description="zscore (MR, per case), ct "
        "(dataset percentile clip + z-score), window (CT window to [0, 1]), "
        "percentile (per case to [0, 1]) or none; or a list of one scheme per input channel, "
        "in channel order (e.g. [ct, zscore] for CT + PET)",
    )
    window: str | None = Field(None, description="CT window preset or 'L,W' for normalization: window")
    crop_foreground: bool = Field(
        True, description="crop each case to the bounding box of its non-background"
    )
    slice_axis: int | None = Field(
        None,
        description="2D models on 3D volumes: the axis slices are taken "
        "along (default: the axis with the largest spacing)",
    )

    @field_validator("target_spacing")
    @classmethod
    def _spacing(cls, v: Any) -> Any:
        if isinstance(v, str) and v != "median":
            raise ValueError("target_spacing must be a list of mm, 'median' or null")
        if isinstance(v, list) and (len(v) not in (2, 3) or any(s <= 0 for s in v)):
            raise ValueError("target_spacing needs 2 or 3 positive values")
        return v

    @field_validator("normalization")
    @classmethod
    def _schemes(cls, v: Any) -> Any:
        if isinstance(v, list) and not v:
            raise ValueError("normalization needs a scheme, or a list of one scheme per channel")
        return v

    @property
    def normalization_schemes(self) -> list[Normalization]:
        """The schemes as a list: one entry (every channel) or one per channel."""
        n = self.normalization
        return list(n) if isinstance(n, list) else [n]

    @property
    def normalization_value(self) -> str | list[str]:
        """The scheme name(s) as the :class:`~medseg.transforms.preprocess.Plan` records them."""
        n = self.normalization
        return [s.value for s in n] if isinstance(n, list) else n.value

    @model_validator(mode="after")
    def _window_needed(self) -> PreprocessingConfig:
        if Normalization.WINDOW in self.normalization_schemes and not self.window:
            raise ValueError("normalization 'window' needs a window (preset name or 'L,W')")
        return self


class ModelConfig(_Strict):
    """The network, by registry name (see ``medseg models``)."""

    name: str = Field(
        description="registry name: unet, dynunet, uctransnet, deeplabv3, deeplabv3plus, fcn, parsenet, "
        "deeplabv1, deeplabv2, pspnet, enet, psanet, segformer, setr"
    )
    spatial_dims: int = Field(
        3, ge=2, le=3, description="2 or 3 (2D models on 3D volumes work slice by slice)"
    )
    params: dict[str, Any] = Field(default_factory=dict, description="family parameters (medseg models)")


class LossConfig(_Strict):
    """The loss, by registry name."""

    name: str = Field(
        "dice_focal", description="dice_focal, dice_ce, focal, ce, tversky; region_dice_bce (with regions)"
    )
    params: dict[str, Any] = Field(
        default_factory=dict,
        description="loss parameters: class_weights (or loss.class_weighting), "
        "include_background, batch_dice; gamma (focal); alpha, beta (tversky); "
        "lambda_dice, lambda_focal, lambda_ce, lambda_bce",
    )
    deep_supervision_weights: list[float] | None = Field(
        None, description="weights of the deep-supervision outputs (default: halving per level)"
    )
    class_weighting: Literal["none", "median_frequency", "enet"] = Field(
        "none",
        description="class weights computed from the training split's label voxel frequencies when "
        "training starts: median_frequency (Eigen & Fergus, ICCV 2015: median f / f_c) or enet "
        "(Paszke et al. 2016: 1 / ln(1.02 + p_c)); logged and written to the run's config.yaml as "
        "loss.params.class_weights (replacing any given); a class absent from every training label "
        "gets weight 0 and a warning; none = loss.params.class_weights as given",
    )
    lesion_weight: float = Field(
        0.0,
        ge=0,
        description="weight of the blob (lesion-wise) Dice term added to the loss (Kofler et al., blob "
        "loss, IPMI 2023): 1 - mean over the reference's lesions (connected components of the "
        "foreground; with regions, of the first region) of the soft Dice of the foreground "
        "probability against that lesion, other lesions masked out; 0 = off",
    )


class ChannelSubstitutionConfig(_Strict):
    """One way a dataset fills missing sequences: channels ``replaced`` are copies of ``source``."""

    source: int = Field(ge=0, description="the channel that is copied (0-based, channel order)")
    replaced: list[int] = Field(min_length=1, description="the channels that become copies of it")

    @model_validator(mode="after")
    def _distinct(self) -> ChannelSubstitutionConfig:
        if self.source in self.replaced or len(set(self.replaced)) != len(self.replaced):
            raise ValueError("replaced must list distinct channels other than source")
        if min(self.replaced) < 0:
            raise ValueError("channel indices are 0-based and non-negative")
        return self


class AugmentationConfig(_Strict):
    """Random augmentation, applied identically to image and label. Probabilities are per patch."""

    enabled: bool = Field(True, description="switch all augmentation off with false")
    elastic_p: float = Field(0.2, ge=0, le=1, description="probability of an elastic deformation")
    elastic_sigma: float = Field(6.0, gt=0, description="smoothness of the displacement field (voxels)")
    elastic_magnitude: float = Field(3.0, ge=0, description="largest displacement (voxels)")
    rotation_p: float = Field(0.2, ge=0, le=1, description="probability of a rotation")
    rotation_degrees: float = Field(
        15.0, ge=0, le=180, description="largest rotation angle (degrees, about each axis in 3D)"
    )
    scaling_p: float = Field(0.2, ge=0, le=1, description="probability of a zoom")
    scaling_range: tuple[float, float] = Field(
        (0.85, 1.25), description="zoom factor range (> 1: the patch covers more of the case)"
    )
    flip_p: float = Field(0.5, ge=0, le=1, description="per axis")
    flip_axes: list[int] | None = Field(None, description="axes to flip (default: all)")
    gamma_p: float = Field(0.3, ge=0, le=1, description="probability of a gamma change")
    gamma_range: tuple[float, float] = Field((0.7, 1.5), description="gamma range")
    contrast_p: float = Field(0.15, ge=0, le=1, description="probability of a contrast change")
    contrast_range: tuple[float, float] = Field((0.75, 1.25), description="contrast factor range")
    brightness_p: float = Field(0.15, ge=0, le=1, description="probability of a brightness change")
    brightness_range: tuple[float, float] = Field((0.75, 1.25), description="brightness factor range")
    noise_p: float = Field(0.1, ge=0, le=1, description="probability of additive Gaussian noise")
    noise_std: float = Field(
        0.1, ge=0, description="largest noise standard deviation (normalised intensities)"
    )
    blur_p: float = Field(0.1, ge=0, le=1, description="probability of a Gaussian blur")
    blur_sigma: tuple[float, float] = Field((0.5, 1.0), description="blur sigma range (voxels)")
    channel_dropout_p: float = Field(
        0.0,
        ge=0,
        le=1,
        description="probability of dropping input channels: set to 0 after normalisation (a "
        "zscore or ct channel's mean), as medseg predict --missing-channel zeros feeds; never all "
        "channels; no-op for 1 channel",
    )
    channel_dropout_max: int | None = Field(
        None, ge=1, description="most channels dropped at once (default: all but one)"
    )
    channel_substitution_p: float = Field(
        0.0,
        ge=0,
        le=1,
        description="probability that a patch gets one of channel_substitutions (drawn uniformly): "
        "channels replaced by a copy of another, as datasets fill missing sequences; 0 = off",
    )
    channel_substitutions: list[ChannelSubstitutionConfig] = Field(
        default_factory=list,
        description="the substitutions to train with, e.g. [{source: 1, replaced: [0, 2]}] "
        "(medseg plan finds them in the data: channels that are exact copies in some cases)",
    )
    color_jitter_p: float = Field(
        0.0,
        ge=0,
        le=1,
        description="probability of per-channel colour jitter (RGB histology, endoscopy): each "
        "channel's contrast and brightness scaled independently; no-op for 1 channel; 0 = off",
    )
    color_jitter_range: tuple[float, float] = Field(
        (0.8, 1.2), description="range of the per-channel contrast and brightness factors"
    )
    color_jitter_mix: float = Field(
        0.0,
        ge=0,
        le=0.5,
        description="hue-like channel mixing: largest share of a channel taken from the others "
        "(rows of the mixing matrix sum to 1, so grey stays grey); 0 = off",
    )
    cutmix_p: float = Field(
        0.0,
        ge=0,
        le=1,
        description="probability that a batch gets CutMix (Yun et al. ICCV 2019; French et al. BMVC "
        "2020): one box of each patch, image and label, replaced by the same box of another patch "
        "of the batch; 2D and 3D; 0 = off",
    )
    cutmix_alpha: float = Field(
        1.0, gt=0, description="the box's share of the patch is drawn from Beta(alpha, alpha)"
    )

    @field_validator("color_jitter_range")
    @classmethod
    def _jitter_range(cls, v: tuple[float, float]) -> tuple[float, float]:
        if not 0 < v[0] <= v[1]:
            raise ValueError("color_jitter_range needs 0 < low <= high")
        return v


class Optimizer(str, Enum):
    SGD = "sgd"
    ADAMW = "adamw"


class Schedule(str, Enum):
    POLY = "poly"
    COSINE = "cosine"


class TrainingConfig(_Strict):
    """Optimisation, sampling and checkpointing."""

    epochs: int = Field(100, ge=1, description="planned number of epochs")
    iterations_per_epoch: int = Field(
        50, ge=1, description="optimiser steps per epoch (shared across ranks under torchrun)"
    )
    batch_size: int = Field(2, ge=1, description="patches per step (per process)")
    patch_size: list[int] = Field(description="patch (voxels) per spatial axis of the model")
    foreground_oversample: float = Field(
        0.33, ge=0, le=1, description="share of patches centred on a labelled voxel"
    )
    foreground_sampling: Literal["voxel", "lesion"] = Field(
        "voxel",
        description="how a foreground patch's centre is drawn: voxel = a uniformly drawn labelled voxel "
        "of a random class (nnU-Net); lesion = a uniformly drawn voxel of a uniformly drawn connected "
        "component (lesion) of the case's foreground, so a 10-voxel lesion is drawn as often as a "
        "10,000-voxel one within a case (components of all foreground classes together)",
    )
    optimizer: Optimizer = Field(Optimizer.SGD, description="sgd (nesterov momentum) or adamw")
    lr: float = Field(0.01, gt=0, description="base learning rate")
    momentum: float = Field(0.99, ge=0, lt=1, description="SGD momentum")
    weight_decay: float = Field(3e-5, ge=0, description="weight decay")
    schedule: Schedule = Field(
        Schedule.POLY, description="poly: lr * (1 - it/max_it)^0.9; cosine: cosine decay after warm-up"
    )
    warmup_epochs: int = Field(0, ge=0, description="linear warm-up epochs (cosine schedule)")
    grad_clip: float | None = Field(
        12.0, gt=0, description="clip the gradient norm to this value (null: no clipping)"
    )
    amp: bool = Field(True, description="mixed precision on CUDA (ignored on CPU)")
    cpu_bf16: bool = Field(
        False, description="bfloat16 autocast on CPUs with native bf16 (AMX / AVX512-BF16); off by default"
    )
    val_every: int = Field(5, ge=1, description="validate every N epochs (and after the last)")
    val_overlap: float = Field(0.5, ge=0, lt=1, description="sliding-window overlap during validation")
    seed: int = Field(
        0, description="seed of initialisation, sampling and augmentation (CPU runs are repeatable)"
    )
    num_workers: int = Field(1, ge=0, description="data-loading worker processes")
    deep_supervision: bool = Field(False, description="train on the model's deep-supervision outputs")
    max_minutes: float | None = Field(None, gt=0, description="stop after this wall-clock budget")
    choose_postprocessing: bool = Field(
        False,
        description="after training, predict the validation cases and choose per class whether keeping "
        "the largest component or removing small ones improves their Dice (RUN/postprocessing.json, "
        "applied by medseg predict); folds choose on out-of-fold predictions instead",
    )
    freeze_encoder_epochs: int = Field(
        0,
        ge=0,
        description="keep the model's encoder (its registry row's encoder_prefixes) frozen for the first "
        "N epochs, e.g. after --init-from, then train it too (0: never frozen)",
    )

    @field_validator("patch_size")
    @classmethod
    def _patch(cls, v: list[int]) -> list[int]:
        if len(v) not in (2, 3) or any(p < 1 for p in v):
            raise ValueError("patch_size needs 2 or 3 positive sizes")
        return v


class InferenceConfig(_Strict):
    """Defaults for prediction with the trained model."""

    overlap: float = Field(0.5, ge=0, lt=1, description="sliding-window overlap")
    tta: bool = Field(False, description="mirror test-time augmentation")
    batch_size: int = Field(2, ge=1, description="patches per step (per process)")
    backend: Literal["auto", "torch", "onnxruntime", "openvino"] = Field(
        "auto",
        description="engine that runs the network: auto picks the fastest that matches fp32 here "
        "(docs/inference.md)",
    )
    precision: Literal["auto", "fp32", "bf16", "int8"] = Field(
        "auto", description="arithmetic precision: auto is bf16 where the CPU has native bf16 or on CUDA"
    )


class CRFConfig(_Strict):
    """Dense CRF refinement of the softmax before the arg-max (docs/inference.md).

    Kraehenbuehl & Koltun, NIPS 2011; defaults: DeepLab's, one pixel read as 1 mm
    (:class:`medseg.inference.crf.CRFOptions`, whose defaults these repeat).
    """

    enabled: bool = Field(False, description="refine softmax models' predictions (medseg predict --crf)")
    iterations: int = Field(5, ge=1, le=100, description="mean-field iterations")
    appearance_weight: float = Field(4.0, ge=0, description="w1 of the appearance kernel (0: off)")
    theta_alpha_mm: float = Field(121.0, gt=0, description="spatial width of the appearance kernel (mm)")
    theta_beta: float = Field(
        0.1, gt=0, description="intensity width of the appearance kernel (SDs of each z-scored channel)"
    )
    smoothness_weight: float = Field(3.0, ge=0, description="w2 of the smoothness kernel (0: off)")
    theta_gamma_mm: float = Field(3.0, gt=0, description="width of the smoothness kernel (mm)")
    normalization: Literal["symmetric", "none"] = Field(
        "symmetric",
        description="kernel normalisation: symmetric (divided by sqrt(n_i n_j), as the authors' code "
        "and DeepLab) or none (the paper's plain kernels)",
    )


class PostprocessingConfig(_Strict):
    """Refinement of predictions (applied by medseg predict with this model)."""

    crf: CRFConfig = Field(default_factory=CRFConfig, description="dense CRF on the softmax (off by default)")


class RegionConfig(_Strict):
    """One region of region-based training: a union of label values, learnt as one sigmoid output.

    Regions may overlap (BraTS: whole tumour {1, 2, 4}, tumour core {1, 4}, enhancing {4}). A
    prediction paints each region's mask with ``value``, in the order the regions are listed, as
    nnU-Net does with ``regions_class_order`` (Isensee et al., nnU-Net, Nature Methods 2021).
    """

    name: str = Field(min_length=1, max_length=64, description="region name (metrics, probability maps)")
    labels: list[int] = Field(min_length=1, description="label values the region is the union of")
    value: int = Field(ge=1, le=65535, description="label value its mask is painted with in a prediction")

    @field_validator("labels")
    @classmethod
    def _labels(cls, v: list[int]) -> list[int]:
        if any(x < 1 for x in v):
            raise ValueError("region labels must be foreground values (>= 1)")
        if len(set(v)) != len(v):
            raise ValueError(f"a region lists a label value twice ({v})")
        return sorted(v)


def check_region_list(regions: list[RegionConfig], labels: Iterable[int] | None) -> None:
    """Region names and painted values distinct; region labels among ``labels`` (when known).

    Raises:
        ValueError: the first problem, in one line (pydantic turns it into a validation error).
    """
    names = [r.name for r in regions]
    values = [r.value for r in regions]
    for what, items in (("name", names), ("value", values)):
        dupes = sorted({str(x) for x in items if items.count(x) > 1})
        if dupes:
            raise ValueError(f"two regions share the {what} {dupes[0]}")
    if labels is None:
        return
    known = {int(x) for x in labels if int(x) > 0}
    for r in regions:
        missing = sorted(set(r.labels) - known)
        if missing:
            raise ValueError(
                f"region {r.name!r} lists label value(s) {missing} that are not labels {sorted(known)}"
            )


class PipelineConfig(_Strict):
    """A whole pipeline: data, preprocessing, model, loss, augmentation, training, inference."""

    name: str = Field(description="name of the pipeline (recorded in the run folder)")
    description: str = Field("", description="free text shown in reports")
    labels: dict[int, str] | None = Field(None, description="class index -> name (default: the manifest's)")
    regions: list[RegionConfig] | None = Field(
        None,
        min_length=1,
        description="region-based training: a list of {name, labels: [values], value} in paint "
        "order; sigmoid outputs, one per region (default: the manifest's regions, else softmax classes)",
    )
    data: DataConfig = Field(description="where the cases come from")
    preprocessing: PreprocessingConfig = Field(
        default_factory=PreprocessingConfig, description="recorded with the model, replayed at prediction"
    )
    model: ModelConfig = Field(description="the network by registry name")
    loss: LossConfig = Field(default_factory=LossConfig, description="the loss by registry name")
    augmentation: AugmentationConfig = Field(
        default_factory=AugmentationConfig, description="random augmentation of training patches"
    )
    training: TrainingConfig = Field(description="optimisation, sampling, validation, checkpoints")
    inference: InferenceConfig = Field(
        default_factory=InferenceConfig, description="defaults for medseg predict with this model"
    )
    postprocessing: PostprocessingConfig = Field(
        default_factory=PostprocessingConfig, description="refinement of predictions (dense CRF)"
    )

    @model_validator(mode="after")
    def _dims_agree(self) -> PipelineConfig:
        if len(self.training.patch_size) != self.model.spatial_dims:
            raise ValueError(
                f"training.patch_size has {len(self.training.patch_size)} sizes but the model is "
                f"{self.model.spatial_dims}D"
            )
        if self.regions is not None:
            check_region_list(self.regions, self.labels)
            if self.postprocessing.crf.enabled:
                raise ValueError(
                    "postprocessing.crf needs softmax classes: region (sigmoid) models cannot use the "
                    "dense CRF; set postprocessing.crf.enabled: false"
                )
        return self
