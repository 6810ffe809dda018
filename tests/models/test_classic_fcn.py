"""Behaviour of the classic fully convolutional families: FCN skip fusion, ParseNet's global
context, DeepLab v1/v2's atrous plan and receptive field, per-axis parameter validation."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from pydantic import ValidationError

from medseg.errors import ConfigError
from medseg.models import build_model
from medseg.models._vgg import Upsample, UpsampleMode, bilinear_kernel
from medseg.models.deeplab_vgg import DeepLabV2Params

torch.set_num_threads(2)

# batch norm in eval mode (running statistics) keeps every layer local: instance norm's
# per-sample statistics would let any input change reach every output position
SMALL = {"features": [4, 8, 8], "convs_per_stage": [1, 1, 1], "fc_channels": 4, "norm": "batch"}


def _eval(model: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    model.eval()
    with torch.no_grad():
        return model(x)


# ----------------------------------------------------------------------------- FCN skip fusion
@pytest.mark.parametrize("dims", [2, 3])
def test_fcn_variants_fuse_pool4_and_pool3_scores(dims):
    torch.manual_seed(0)
    x = torch.randn(1, 1, *(16,) * dims)
    for variant, n_skips in (("32s", 0), ("16s", 1), ("8s", 2)):
        model = build_model("fcn", dims, 1, 2, variant=variant, **SMALL)
        assert model.net.skip_stages == [1, 0][:n_skips]  # pool4 (second-to-last), then pool3
        assert len(model.net.skip_scores) == n_skips
    # zeroing the pool3 score branch changes the 8s output: it is fused in
    model = build_model("fcn", dims, 1, 2, variant="8s", **SMALL)
    before = _eval(model, x)
    with torch.no_grad():
        for p in model.net.skip_scores[1].parameters():
            p.zero_()
    assert not torch.allclose(_eval(model, x), before, atol=1e-4)


def _coarse_and_output(model: torch.nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The final score map (before any fusion) and the logits."""
    seen = []
    handle = model.net.score.register_forward_hook(lambda m, i, o: seen.append(o))
    out = _eval(model, x)
    handle.remove()
    return seen[0], out


def test_fcn_32s_is_an_upsampled_coarse_map_and_8s_is_not():
    """Without skips the logits are the stride-8 score map interpolated (no finer detail can come
    from pool3); with them, they are not."""
    torch.manual_seed(0)
    x = torch.randn(1, 1, 32, 32)
    for variant in ("32s", "8s"):
        model = build_model("fcn", 2, 1, 2, variant=variant, upsample="interpolate", **SMALL)
        coarse, out = _coarse_and_output(model, x)
        assert tuple(coarse.shape[2:]) == (4, 4)
        upsampled = F.interpolate(coarse, size=(32, 32), mode="bilinear", align_corners=False)
        if variant == "32s":
            torch.testing.assert_close(out, upsampled)
        else:
            assert not torch.allclose(out, upsampled, atol=1e-3)


@pytest.mark.parametrize("factor", [(2, 2), (4, 1), (3, 2)])
def test_transposed_upsampling_starts_as_linear_interpolation(factor):
    """FCN's bilinear filler: away from the border the initial transposed convolution equals
    ``F.interpolate(..., align_corners=False)``, channel by channel."""
    assert bilinear_kernel((2,)).tolist() == [0.25, 0.75, 0.75, 0.25]
    up = Upsample(2, 3, factor, UpsampleMode.TRANSPOSED)
    x = torch.randn(1, 3, 8, 8)
    size = (8 * factor[0], 8 * factor[1])
    with torch.no_grad():
        y = up(x, size)
    ref = F.interpolate(x, size=size, mode="bilinear", align_corners=False)
    assert tuple(y.shape[2:]) == size
    inner = (slice(None), slice(None), slice(factor[0], -factor[0]), slice(factor[1], -factor[1]))
    torch.testing.assert_close(y[inner], ref[inner], atol=1e-6, rtol=1e-6)


# ----------------------------------------------------------------------------- ParseNet global context
def _corner_effect(name: str, **params) -> float:
    """Largest change of the bottom-right logits when the top-left corner of the input changes."""
    torch.manual_seed(0)
    model = build_model(name, 2, 1, 2, variant="32s", **SMALL, **params)
    x = torch.randn(1, 1, 64, 64)
    y = x.clone()
    y[..., :8, :8] += 5.0
    return float((_eval(model, x) - _eval(model, y))[..., -4:, -4:].abs().max())


def test_parsenet_global_context_reaches_the_far_corner_and_fcn_does_not():
    # the plain FCN's receptive field (about 40 px here) does not span the 64 px image
    assert _corner_effect("fcn") == 0.0
    # ParseNet's global average changes with the corner (by 5 * 64 / 4096 here), and with it every logit
    assert _corner_effect("parsenet") > 1e-5
    assert _corner_effect("parsenet", l2_norm=False) > 1e-5


def test_parsenet_l2_norm_scales_feature_vectors():
    model = build_model("parsenet", 2, 1, 2, scale_init=3.0, **SMALL)
    norm = model.net.context.local_norm
    x = torch.randn(2, 4, 5, 5) * 10  # norms well above the floor of 1
    with torch.no_grad():
        y = norm(x)
    torch.testing.assert_close(y.norm(dim=1), torch.full((2, 5, 5), 3.0))
    assert torch.equal(norm(torch.zeros(1, 4, 2, 2)), torch.zeros(1, 4, 2, 2))  # no 0/0
    # the context doubles the score layer's input: local and broadcast global features
    assert model.net.score.in_channels == 2 * 4


# ----------------------------------------------------------------------------- DeepLab v1/v2
def _conv_dilations(model: torch.nn.Module) -> list[tuple[int, ...]]:
    return [stage[0][0].dilation for stage in model.net.encoder.stages]


def _pool_strides(model: torch.nn.Module) -> list[object]:
    return [getattr(p, "stride", 1) for p in model.net.encoder.pools]


def test_deeplab_vgg_atrous_plan_matches_the_papers():
    """VGG-16 layout at output stride 8: pool4 and pool5 keep the size, conv5 is dilated by 2;
    without atrous the pools stride 2 and nothing is dilated."""
    atrous = build_model("deeplabv1", 2, 1, 2)
    assert _pool_strides(atrous) == [(2, 2)] * 3 + [(1, 1)] * 2
    assert _conv_dilations(atrous) == [(1, 1)] * 4 + [(2, 2)]
    assert atrous.divisor == (8, 8)
    assert atrous.net.branches[0][0][0][0].dilation == (4, 4)  # LargeFOV fc6 rate
    plain = build_model("deeplabv1", 2, 1, 2, atrous=False)
    assert _pool_strides(plain) == [(2, 2)] * 5
    assert _conv_dilations(plain) == [(1, 1)] * 5
    assert plain.divisor == (32, 32)
    assert plain.net.branches[0][0][0][0].dilation == (1, 1)
    # per-axis: no pooling through-plane in the first stage, output stride 8 x 8 x 2
    aniso = build_model("deeplabv2", 3, 1, 2, strides=[[2, 2, 1], 2, 2, 2, 2], output_stride=[8, 8, 2],
                        rates=[[6, 6, 1], [12, 12, 2]])  # fmt: skip
    assert _conv_dilations(aniso) == [(1, 1, 1)] * 3 + [(1, 1, 2), (2, 2, 4)]
    assert [b[0][0][0].dilation for b in aniso.net.branches] == [(6, 6, 1), (12, 12, 2)]
    assert _pool_strides(aniso) == [(2, 2, 1), (2, 2, 2), (2, 2, 1), (1, 1, 1), (1, 1, 1)]
    assert aniso.divisor == (8, 8, 2)


def _receptive_field(model: torch.nn.Module, size: int) -> tuple[int, int]:
    """Extent (rows, columns) of the input pixels the centre logit depends on: the support of its
    gradient, united over 16 random inputs (one input's max-pooling and ReLU paths miss some)."""
    model.eval()
    x = torch.randn(16, 1, size, size, generator=torch.Generator().manual_seed(1), requires_grad=True)
    model(x)[:, :, size // 2, size // 2].sum().backward()
    rows, cols = torch.nonzero(x.grad[:, 0].abs().amax(0) > 0, as_tuple=True)
    return int(rows.max() - rows.min() + 1), int(cols.max() - cols.min() + 1)


def test_deeplabv2_atrous_widens_the_receptive_field():
    torch.manual_seed(0)
    params = {**SMALL, "output_stride": 2, "rates": [6, 12]}
    with_atrous = _receptive_field(build_model("deeplabv2", 2, 1, 2, **params), 160)
    without = _receptive_field(build_model("deeplabv2", 2, 1, 2, atrous=False, **params), 160)
    # dilated fc6 at rate 12 on the stride-2 map: +-24 px from the heads alone (about 74 px measured),
    # against a 3x3 fc6 on the stride-8 map without atrous (about 46 px)
    assert min(with_atrous) > max(without) + 16, (with_atrous, without)


# ----------------------------------------------------------------------------- validation
@pytest.mark.parametrize(
    ("name", "params", "needle"),
    [
        (
            "deeplabv2",
            {"rates": [[6, 6], [12, 12, 2]]},
            "rates entry [6, 6] has 2 entries but the model is 3D",
        ),
        ("deeplabv2", {"rates": []}, "at least one entry"),
        ("deeplabv1", {"fc_rate": [12, 12]}, "fc_rate [12, 12] has 2 entries but the model is 3D"),
        ("deeplabv1", {"output_stride": 12}, "output_stride"),
        ("deeplabv1", {"features": [4, 8], "strides": [2, 2, 2]}, "strides has 3 entries"),
        ("fcn", {"features": [4, 8], "variant": "8s"}, "needs at least 3 stages"),
        ("fcn", {"variant": "4s"}, "'variant'"),
        ("fcn", {"fc_kernel_size": 4}, "odd"),
        ("fcn", {"convs_per_stage": [2, 2]}, "convs_per_stage needs 5 entries"),
        ("parsenet", {"strides": [[2, 2], 2, 2, 2, 2]}, "2 entries but the model is 3D"),
    ],
)
def test_invalid_params_are_refused_with_the_reason(name, params, needle):
    with pytest.raises(ConfigError) as exc:
        build_model(name, 3, 1, 2, **params)
    assert needle in str(exc.value)


def test_per_axis_rates_are_checked_against_spatial_dims():
    ok = DeepLabV2Params.model_validate({"rates": [[6, 6], [12, 12]]}, context={"spatial_dims": 2})
    assert ok.rates == ((6, 6), (12, 12))
    with pytest.raises(ValidationError, match="has 2 entries but the model is 3D"):
        DeepLabV2Params.model_validate({"rates": [[6, 6], 12]}, context={"spatial_dims": 3})
