"""Family behaviour: ablation switches, atrous planning, channel cross-attention, deep supervision."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from monai.networks.nets import DynUNet as MonaiDynUNet
from torch import nn

from medseg.errors import ConfigError
from medseg.models import build_model
from medseg.models.deeplab import plan_stages
from medseg.models.uctransnet import CCA

torch.set_num_threads(2)


# ----------------------------------------------------------------------------- U-Net skip ablation
def _with_bottleneck_of(model, x_a, x_b):
    """Run ``x_a`` through the U-Net but replace its bottleneck features by those of ``x_b``."""
    bottleneck = model.net.encoder[-1]
    with torch.no_grad():
        captured = []
        handle = bottleneck.register_forward_hook(lambda m, i, o: captured.append(o))
        model(x_b)
        handle.remove()
        handle = bottleneck.register_forward_hook(lambda m, i, o: captured[0])
        out = model(x_a)
        handle.remove()
    return out


@pytest.mark.parametrize("dims", [2, 3])
def test_unet_without_skips_sees_the_input_only_through_the_bottleneck(dims):
    torch.manual_seed(0)
    shape = (1, 1, *(16,) * dims)
    x_a, x_b = torch.randn(shape), torch.randn(shape)
    for skips in (False, True):
        model = build_model("unet", dims, 1, 2, features=[4, 8, 8], skip_connections=skips).eval()
        with torch.no_grad():
            out_b = model(x_b)
        swapped = _with_bottleneck_of(model, x_a, x_b)
        if skips:
            assert not torch.allclose(swapped, out_b, atol=1e-3)  # encoder features of x_a leak in
        else:
            assert torch.equal(swapped, out_b)  # nothing of x_a but the bottleneck reaches the output


def test_unet_skip_ablation_changes_only_decoder_widths():
    on = build_model("unet", 3, 1, 2, features=[4, 8, 16])
    off = build_model("unet", 3, 1, 2, features=[4, 8, 16], skip_connections=False)
    first = next(m for m in on.net.decoder.modules() if isinstance(m, nn.Conv3d))
    first_off = next(m for m in off.net.decoder.modules() if isinstance(m, nn.Conv3d))
    assert first.in_channels == 2 * first_off.in_channels == 16
    n_on = sum(p.numel() for p in on.net.encoder.parameters())
    assert n_on == sum(p.numel() for p in off.net.encoder.parameters())


@pytest.mark.parametrize("top_skip", [False, True])
def test_unet_without_the_top_skip_sees_the_input_only_through_level_two(top_skip):
    """Dropping only the full-resolution skip: the output depends on the input only through level 2."""
    torch.manual_seed(0)
    model = build_model("unet", 2, 1, 2, features=[4, 8, 8], skip_connections=[top_skip, True]).eval()
    x_a, x_b = torch.randn(1, 1, 16, 16), torch.randn(1, 1, 16, 16)
    captured = []
    level2 = model.net.encoder[1]
    with torch.no_grad():
        out_b = model(x_b)
        handle = level2.register_forward_hook(lambda m, i, o: captured.append(o))
        model(x_b)
        handle.remove()
        handle = level2.register_forward_hook(lambda m, i, o: captured[0])
        swapped = model(x_a)  # x_a everywhere except level 2's output, which is x_b's
        handle.remove()
    assert torch.equal(swapped, out_b) != top_skip


@pytest.mark.parametrize("flags", [(False, True), (True, False), (False, False)])
def test_unet_per_level_skips_set_the_decoder_widths(flags):
    model = build_model("unet", 2, 1, 2, features=[4, 8, 8], skip_connections=list(flags))
    dec_in = [next(m for m in b.modules() if isinstance(m, nn.Conv2d)).in_channels for b in model.net.decoder]
    assert dec_in == [8 * (2 if flags[1] else 1), 4 * (2 if flags[0] else 1)]  # decoder runs bottom-up


def test_unet_skip_flags_must_match_the_levels():
    with pytest.raises(ConfigError, match="skip levels"):
        build_model("unet", 2, 1, 2, features=[4, 8, 8], skip_connections=[True])


# ----------------------------------------------------------------------------- DeepLab atrous planning
def test_plan_stages_replaces_strides_by_dilations_like_deeplab():
    iso = [(2, 2)] * 5  # stem + 4 stages, nominal output stride 32
    os16 = plan_stages(iso, (16, 16))
    assert [p.stride for p in os16] == [(2, 2)] * 4 + [(1, 1)]
    assert [p.dilation for p in os16] == [(1, 1)] * 4 + [(2, 2)]
    os8 = plan_stages(iso, (8, 8))
    assert [p.stride for p in os8] == [(2, 2)] * 3 + [(1, 1)] * 2
    assert [p.first_dilation for p in os8][3:] == [(1, 1), (2, 2)]
    assert [p.dilation for p in os8][3:] == [(2, 2), (4, 4)]
    assert [p.cumulative_stride for p in os8] == [(2, 2), (4, 4), (8, 8), (8, 8), (8, 8)]
    # anisotropic: no stride along z in the stem, output stride 16 x 16 x 4
    aniso = plan_stages([(2, 2, 1), (2, 2, 2), (2, 2, 2), (2, 2, 2), (2, 2, 2)], (16, 16, 4))
    assert [p.stride for p in aniso] == [(2, 2, 1), (2, 2, 2), (2, 2, 2), (2, 2, 1), (1, 1, 1)]
    assert [p.dilation for p in aniso] == [(1, 1, 1)] * 3 + [(1, 1, 2), (2, 2, 4)]
    # the ablation keeps the strides and drops every dilation
    flat = plan_stages(iso, (8, 8), atrous=False)
    assert [p.stride for p in flat] == [p.stride for p in os8]
    assert all(p.dilation == p.first_dilation == (1, 1) for p in flat)
    with pytest.raises(ValueError, match="output_stride"):
        plan_stages(iso, (12, 12))


def _dilations(model: nn.Module) -> set[tuple[int, ...]]:
    return {tuple(m.dilation) for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Conv3d))}


def test_deeplab_per_axis_dilations_reach_the_convolutions():
    model = build_model(
        "deeplabv3plus",
        3,
        1,
        2,
        features=[4, 8, 8, 8, 8],
        strides=[[2, 2, 1], 2, 2, 2, 2],
        output_stride=[8, 8, 4],
        aspp_rates=[[3, 3, 1], [6, 6, 2]],
    )
    assert required_shape_ok(model, (1, 1, 16, 16, 8))
    dil = _dilations(model)
    assert {(2, 2, 2), (4, 4, 4), (3, 3, 1), (6, 6, 2)} <= dil
    flat = build_model(
        "deeplabv3plus", 3, 1, 2, features=[4, 8, 8, 8, 8], strides=[[2, 2, 1], 2, 2, 2, 2],
        output_stride=[8, 8, 4], aspp_rates=[[3, 3, 1], [6, 6, 2]], atrous=False,
    )  # fmt: skip
    assert _dilations(flat) == {(1, 1, 1)}


def required_shape_ok(model: nn.Module, shape: tuple[int, ...]) -> bool:
    with torch.no_grad():
        return tuple(model.eval()(torch.zeros(shape)).shape[2:]) == shape[2:]


def _receptive_extent(model: nn.Module, size: int = 64) -> int:
    """Width (pixels along x) of the input region that influences the centre output pixel."""
    x = torch.randn(1, 1, size, size, requires_grad=True)
    out = model(x)
    out[0, 1, size // 2, size // 2].backward()
    cols = (x.grad[0, 0].abs() > 0).any(dim=0).nonzero()
    return int(cols.max() - cols.min() + 1)


def test_atrous_receptive_field_matches_the_dilation_plan():
    """BatchNorm in eval mode and no image pooling keep every operation local, so the receptive
    field is what the strides and dilations make it. Longest path, (k-1) * dilation * input stride
    per 3x3 conv: stem 2+4, stage1 4+8, stage2 8+16, stage3 16 + 16*d, ASPP 16*rate, head 16; plus
    1 for the pixel and 8 for the bilinear x8 upsampling (two stride-8 map pixels)."""
    common = dict(
        features=[4, 8, 8, 8], aspp_channels=8, norm="batch", image_pooling=False, aspp_rates=[2, 4]
    )
    torch.manual_seed(0)
    atrous = build_model("deeplabv3", 2, 1, 2, **common).eval()
    torch.manual_seed(0)
    plain = build_model("deeplabv3", 2, 1, 2, atrous=False, **common).eval()
    base = 2 + 4 + 4 + 8 + 8 + 16 + 16 + 16 + 1 + 8
    assert _receptive_extent(atrous, 192) == base + 16 * 2 + 16 * 4  # stage3 dilation 2, ASPP rate 4
    assert _receptive_extent(plain, 192) == base + 16 + 16  # every dilation 1


# ----------------------------------------------------------------------------- UCTransNet
def test_cct_fuses_every_encoder_level_into_every_skip():
    torch.manual_seed(0)
    model = build_model(
        "uctransnet", 2, 1, 2, features=[4, 8, 8, 8], transformer_layers=1, num_heads=2
    ).eval()
    cct = model.net.cct
    skips = [torch.randn(1, c, 32 // 2**i, 32 // 2**i, requires_grad=True) for i, c in enumerate([4, 8, 8])]
    fused = cct(skips)
    assert [f.shape for f in fused] == [s.shape for s in skips]
    for i, out in enumerate(fused):
        grads = torch.autograd.grad(out.square().sum(), skips, retain_graph=True)
        for j, g in enumerate(grads):
            assert g.abs().sum() > 0, f"skip {i} does not depend on encoder level {j}"


def test_cca_gate_formula():
    cca = CCA(skip_channels=3, up_channels=5)
    with torch.no_grad():
        for lin in (cca.mlp_x, cca.mlp_g):
            lin.weight.zero_()
        cca.mlp_x.bias.copy_(torch.tensor([0.0, 2.0, -4.0]))
        cca.mlp_g.bias.copy_(torch.tensor([0.0, 2.0, 0.0]))
    skip = torch.randn(2, 3, 4, 5, 6)
    gate = torch.sigmoid(torch.tensor([0.0, 2.0, -2.0])).view(1, 3, 1, 1, 1)
    torch.testing.assert_close(cca(torch.randn(2, 5, 4, 5, 6), skip), F.relu(skip * gate))


def test_uctransnet_position_embeddings_follow_the_token_grid():
    model = build_model("uctransnet", 3, 1, 2, features=[4, 8, 8], token_stride=4, pos_grid=2, num_heads=1)
    with torch.no_grad():
        for emb in model.net.cct.embeddings:
            emb.position.normal_()
    model.eval()
    with torch.no_grad():
        a = model(torch.zeros(1, 1, 8, 8, 8))  # token grid 2x2x2 = pos_grid: used as is
        b = model(torch.zeros(1, 1, 8, 12, 20))  # 2x3x5: interpolated
    assert torch.isfinite(a).all() and torch.isfinite(b).all()
    assert a.shape[2:] == (8, 8, 8) and b.shape[2:] == (8, 12, 20)


# ----------------------------------------------------------------------------- DynUNet deep supervision
def test_dynunet_aux_outputs_are_monais_heads_at_their_own_resolution():
    torch.manual_seed(0)
    kwargs = dict(
        features=[4, 8, 8, 16], strides=[1, [2, 2, 1], 2, 2], deep_supervision=True, deep_supr_num=2
    )
    ours = build_model("dynunet", 3, 1, 3, **kwargs)
    monai = MonaiDynUNet(
        3,
        1,
        3,
        kernel_size=[3, 3, 3, 3],
        strides=[1, [2, 2, 1], 2, 2],
        upsample_kernel_size=[[2, 2, 1], 2, 2],
        filters=[4, 8, 8, 16],
        deep_supervision=True,
        deep_supr_num=2,
    )
    monai.load_state_dict(ours.net.state_dict())
    x = torch.randn(1, 1, 16, 16, 8)
    ours.train()
    monai.train()
    with torch.no_grad():
        full, aux1, aux2 = ours(x)
        stacked = monai(x)
    assert aux1.shape[2:] == (8, 8, 8) and aux2.shape[2:] == (4, 4, 4)
    assert ours.deep_supervision_scales == [(2, 2, 1), (4, 4, 2)]
    torch.testing.assert_close(full, stacked[:, 0])
    for k, aux in enumerate((aux1, aux2), start=1):
        torch.testing.assert_close(F.interpolate(aux, size=x.shape[2:]), stacked[:, k])


# ----------------------------------------------------------------------------- ONNX-friendly instance norm
@pytest.mark.parametrize("dims", [2, 3])
def test_export_instance_norm_is_the_same_maths(dims):
    """The per-axis formulation used for ONNX export equals torch's instance norm."""
    from medseg.models._blocks import _instance_norm_by_axis, make_norm

    norm = make_norm("instance", dims, 4)
    with torch.no_grad():
        norm.weight.uniform_(0.5, 2.0)
        norm.bias.uniform_(-1.0, 1.0)
        x = 3 * torch.randn(2, 4, *(7, 9, 11)[:dims]) + 5
        torch.testing.assert_close(
            _instance_norm_by_axis(x, norm.weight, norm.bias, norm.eps), norm(x), atol=2e-6, rtol=1e-5
        )
