"""Building blocks shared by the network families, for 2D and 3D.

Every block takes ``spatial_dims`` (2 or 3) and per-axis kernel sizes,
strides and dilations (an int or one int per axis), so anisotropic volumes
can be handled with the same code.
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Iterator, Sequence

import torch
from torch import nn

from medseg.models._params import Act, Norm, PerAxis, as_tuple


def conv_type(spatial_dims: int) -> type[nn.Conv2d] | type[nn.Conv3d]:
    """``nn.Conv2d`` or ``nn.Conv3d``."""
    return {2: nn.Conv2d, 3: nn.Conv3d}[spatial_dims]


def conv_transpose_type(spatial_dims: int) -> type[nn.ConvTranspose2d] | type[nn.ConvTranspose3d]:
    """``nn.ConvTranspose2d`` or ``nn.ConvTranspose3d``."""
    return {2: nn.ConvTranspose2d, 3: nn.ConvTranspose3d}[spatial_dims]


def max_pool_type(spatial_dims: int) -> type[nn.MaxPool2d] | type[nn.MaxPool3d]:
    """``nn.MaxPool2d`` or ``nn.MaxPool3d``."""
    return {2: nn.MaxPool2d, 3: nn.MaxPool3d}[spatial_dims]


def interp_mode(spatial_dims: int) -> str:
    """Linear interpolation mode name for ``F.interpolate``."""
    return {2: "bilinear", 3: "trilinear"}[spatial_dims]


def _instance_norm_by_axis(
    x: torch.Tensor, weight: torch.Tensor | None, bias: torch.Tensor | None, eps: float
):
    """Instance norm with the means taken one axis at a time (two-pass variance).

    Mathematically the same as ``F.instance_norm``; used when exporting to ONNX
    because onnxruntime's float32 ``InstanceNormalization`` (and a single
    ``ReduceMean`` over the whole volume) sums sequentially, which loses ~1e-5
    relative accuracy on 3D feature maps; reducing axis by axis keeps each sum short.
    """

    def mean(t: torch.Tensor) -> torch.Tensor:
        for dim in range(t.ndim - 1, 1, -1):
            t = t.mean(dim=dim, keepdim=True)
        return t

    centred = x - mean(x)
    y = centred / torch.sqrt(mean(centred * centred) + eps)
    shape = (1, -1) + (1,) * (x.ndim - 2)
    if weight is not None:
        y = y * weight.view(shape)
    if bias is not None:
        y = y + bias.view(shape)
    return y


_CHANNELS_LAST = {4: torch.channels_last, 5: torch.channels_last_3d}


def _instance_norm_channels_last(
    x: torch.Tensor, weight: torch.Tensor | None, bias: torch.Tensor | None, eps: float
) -> torch.Tensor:
    """Instance norm of a channels-last ``[B, C, *spatial]`` tensor without leaving that layout.

    PyTorch's ``instance_norm`` copies a channels-last input to the contiguous layout and back,
    which costs more than the convolution around it on a CPU. Here the statistics come from two
    batched BLAS calls on the ``[B, N, C]`` view (a mean, and the Gram diagonal for the sum of
    squares), accumulated in float32, and the normalisation is one fused ``addcmul``. A sample
    with a channel whose mean exceeds about 3 standard deviations (where ``E[x^2] - E[x]^2``
    cancels) gets its statistics in two passes instead (in float64 past 100 standard
    deviations). Used at inference only (no autograd); results equal ``F.instance_norm`` to
    float32 rounding (tested against float64 for means of 0 to 10^4 standard deviations).
    """
    b, c = x.shape[:2]
    v = x.movedim(1, -1).reshape(b, -1, c).float()  # a view when x is channels-last
    n = v.shape[1]
    mean = v.mean(1)  # [B, C]
    sumsq = torch.bmm(v.transpose(1, 2), v).diagonal(dim1=1, dim2=2)
    var = sumsq / n - mean * mean
    # E[x^2] - E[x]^2 loses about (mean/std)^2 float32 units: past mean/std ~ 3, two passes instead
    ratio = (mean * mean / var.clamp_min(eps)).amax(dim=1)  # [B]: the worst channel of each sample
    for i in torch.nonzero(ratio > 10).flatten().tolist():
        vi = v[i].double() if ratio[i] > 1e4 else v[i]  # float64 only where float32 means lose digits
        mean_i = vi.mean(0)
        var[i], mean[i] = (vi - mean_i).square().mean(0).float(), mean_i.float()
    scale = torch.rsqrt(var.clamp_min(0) + eps)
    if weight is not None:
        scale = scale * weight.float()
    shift = -mean * scale
    if bias is not None:
        shift = shift + bias.float()
    shape = (b, c) + (1,) * (x.ndim - 2)
    return torch.addcmul(shift.view(shape).to(x.dtype), x, scale.view(shape).to(x.dtype))


_CHANNELS_LAST_INFERENCE: contextvars.ContextVar[bool] = contextvars.ContextVar(
    "medseg_channels_last_inference", default=False
)


@contextlib.contextmanager
def channels_last_inference() -> Iterator[None]:
    """Within this context, medseg's instance norms keep channels-last inputs channels-last
    (:func:`_instance_norm_channels_last`). The torch inference backend runs its network in it;
    elsewhere (training, export, the model contract) PyTorch's own kernel is used, unchanged."""
    token = _CHANNELS_LAST_INFERENCE.set(True)
    try:
        yield
    finally:
        _CHANNELS_LAST_INFERENCE.reset(token)


def _fast_path(module: nn.Module, x: torch.Tensor) -> bool:
    return (
        _CHANNELS_LAST_INFERENCE.get()
        and not module.training
        and not torch.is_grad_enabled()
        and not module.track_running_stats
        and x.device.type == "cpu"
        and x.is_contiguous(memory_format=_CHANNELS_LAST.get(x.ndim, torch.contiguous_format))
        and x.shape[1] > 1
    )


class InstanceNorm2d(nn.InstanceNorm2d):
    """``nn.InstanceNorm2d`` that exports to ONNX as accurate per-axis reductions, and keeps a
    channels-last input channels-last at inference (see :func:`_instance_norm_channels_last`)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if torch.onnx.is_in_onnx_export() and not self.track_running_stats:
            return _instance_norm_by_axis(x, self.weight, self.bias, self.eps)
        if _fast_path(self, x):
            return _instance_norm_channels_last(x, self.weight, self.bias, self.eps)
        return super().forward(x)


class InstanceNorm3d(nn.InstanceNorm3d):
    """``nn.InstanceNorm3d`` that exports to ONNX as accurate per-axis reductions, and keeps a
    channels-last input channels-last at inference (see :func:`_instance_norm_channels_last`)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if torch.onnx.is_in_onnx_export() and not self.track_running_stats:
            return _instance_norm_by_axis(x, self.weight, self.bias, self.eps)
        if _fast_path(self, x):
            return _instance_norm_channels_last(x, self.weight, self.bias, self.eps)
        return super().forward(x)


def use_accurate_instance_norm(module: nn.Module) -> nn.Module:
    """Switch every plain ``nn.InstanceNorm2d/3d`` inside ``module`` (e.g. from a MONAI network) to
    the ONNX-accurate subclasses above, in place; parameters and state-dict keys are unchanged."""
    swap = {nn.InstanceNorm2d: InstanceNorm2d, nn.InstanceNorm3d: InstanceNorm3d}
    for m in module.modules():
        new = swap.get(type(m))
        if new is not None:
            m.__class__ = new
    return module


def make_norm(norm: Norm | str, spatial_dims: int, channels: int) -> nn.Module:
    """An affine instance norm (statistics per sample) or a batch norm."""
    norm = Norm(norm)
    if norm is Norm.INSTANCE:
        return {2: InstanceNorm2d, 3: InstanceNorm3d}[spatial_dims](channels, affine=True)
    return {2: nn.BatchNorm2d, 3: nn.BatchNorm3d}[spatial_dims](channels)


def make_act(act: Act | str) -> nn.Module:
    """The activation layer named by ``act``."""
    act = Act(act)
    if act is Act.RELU:
        return nn.ReLU(inplace=True)
    if act is Act.LEAKYRELU:
        return nn.LeakyReLU(0.01, inplace=True)
    return nn.PReLU()


def same_padding(kernel: Sequence[int], dilation: Sequence[int]) -> tuple[int, ...]:
    """Padding that keeps the size for odd kernels (``dilation * (k - 1) / 2`` per axis)."""
    return tuple(d * (k - 1) // 2 for k, d in zip(kernel, dilation))


class ConvNormAct(nn.Sequential):
    """Convolution, normalisation, activation (and optional dropout), 'same' padding.

    Args:
        spatial_dims: 2 or 3.
        in_channels: input channels.
        out_channels: output channels.
        kernel_size: kernel size, an int or one per axis (odd).
        stride: stride, an int or one per axis.
        dilation: dilation, an int or one per axis.
        norm: normalisation kind.
        act: activation kind; ``None`` for none.
        dropout: dropout probability after the activation (0 for none).
    """

    def __init__(
        self,
        spatial_dims: int,
        in_channels: int,
        out_channels: int,
        kernel_size: PerAxis = 3,
        stride: PerAxis = 1,
        dilation: PerAxis = 1,
        norm: Norm | str = Norm.INSTANCE,
        act: Act | str | None = Act.LEAKYRELU,
        dropout: float = 0.0,
    ) -> None:
        k = as_tuple(kernel_size, spatial_dims)
        d = as_tuple(dilation, spatial_dims)
        layers: list[nn.Module] = [
            conv_type(spatial_dims)(
                in_channels,
                out_channels,
                k,
                stride=as_tuple(stride, spatial_dims),
                padding=same_padding(k, d),
                dilation=d,
                bias=False,
            ),
            make_norm(norm, spatial_dims, out_channels),
        ]
        if act is not None:
            layers.append(make_act(act))
        if dropout > 0:
            layers.append({2: nn.Dropout2d, 3: nn.Dropout3d}[spatial_dims](dropout))
        super().__init__(*layers)


class ResidualBlock(nn.Module):
    """``n_convs`` conv-norm-act layers with an identity (or 1x1 projection) shortcut, He et al. 2016.

    The first convolution carries the stride; the shortcut is projected with a
    strided 1x1 convolution whenever the stride or the channel count changes.
    The activation is applied after the sum.
    """

    def __init__(
        self,
        spatial_dims: int,
        in_channels: int,
        out_channels: int,
        kernel_size: PerAxis = 3,
        stride: PerAxis = 1,
        dilation: PerAxis = 1,
        norm: Norm | str = Norm.INSTANCE,
        act: Act | str = Act.LEAKYRELU,
        n_convs: int = 2,
        dropout: float = 0.0,
        first_dilation: PerAxis | None = None,
    ) -> None:
        super().__init__()
        if n_convs < 1:
            raise ValueError(f"n_convs must be >= 1, got {n_convs}")
        convs: list[nn.Module] = []
        for i in range(n_convs):
            last = i == n_convs - 1
            convs.append(
                ConvNormAct(
                    spatial_dims,
                    in_channels if i == 0 else out_channels,
                    out_channels,
                    kernel_size,
                    stride=stride if i == 0 else 1,
                    dilation=(first_dilation if first_dilation is not None else dilation)
                    if i == 0
                    else dilation,
                    norm=norm,
                    act=None if last else act,
                    dropout=0.0 if last else dropout,
                )
            )
        self.convs = nn.Sequential(*convs)
        strided = any(s != 1 for s in as_tuple(stride, spatial_dims))
        if strided or in_channels != out_channels:
            self.shortcut: nn.Module = nn.Sequential(
                conv_type(spatial_dims)(
                    in_channels, out_channels, 1, stride=as_tuple(stride, spatial_dims), bias=False
                ),
                make_norm(norm, spatial_dims, out_channels),
            )
        else:
            self.shortcut = nn.Identity()
        self.act = make_act(act)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.convs(x) + self.shortcut(x))


def conv_stack(
    spatial_dims: int,
    in_channels: int,
    out_channels: int,
    n_convs: int,
    kernel_size: PerAxis = 3,
    norm: Norm | str = Norm.INSTANCE,
    act: Act | str = Act.LEAKYRELU,
    residual: bool = False,
    dropout: float = 0.0,
) -> nn.Module:
    """``n_convs`` conv-norm-act layers, plain or as one residual block (the U-Net level block)."""
    if residual:
        return ResidualBlock(
            spatial_dims, in_channels, out_channels, kernel_size, norm=norm, act=act, n_convs=n_convs,
            dropout=dropout,
        )  # fmt: skip
    return nn.Sequential(
        *[
            ConvNormAct(
                spatial_dims,
                in_channels if i == 0 else out_channels,
                out_channels,
                kernel_size,
                norm=norm,
                act=act,
                dropout=dropout,
            )
            for i in range(n_convs)
        ]
    )


def resize_to(x: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
    """``x`` ``[B, C, *spatial]`` resized (bi/trilinear, half-pixel centres) to ``size``; returned
    unchanged when already that size."""
    size = tuple(int(s) for s in size)
    if tuple(x.shape[2:]) == size:
        return x
    return torch.nn.functional.interpolate(x, size=size, mode=interp_mode(x.ndim - 2), align_corners=False)
