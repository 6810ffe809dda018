"""Behaviour of the transformer families beyond the shared contract: SegFormer's efficient
attention and presets, SETR's position embeddings and MLA layer checks, global receptive fields."""

from __future__ import annotations

import io
import math
import warnings

import numpy as np
import pytest
import torch

from medseg.errors import ConfigError
from medseg.models import build_model, count_parameters
from medseg.models._transformer import TransformerBlock, to_map, to_tokens
from medseg.models.segformer.mit import EfficientSelfAttention, MiTBlock
from medseg.models.setr.model import ViTEncoder

torch.set_num_threads(2)


def _hand_attention(attn: torch.nn.Module, x: torch.Tensor, heads: int) -> torch.Tensor:
    """Multi-head self-attention written out with einsum and softmax, using ``attn``'s weights."""
    b, n, c = x.shape
    d = c // heads
    q = torch.nn.functional.linear(x, attn.q.weight, attn.q.bias)
    kv = torch.nn.functional.linear(x, attn.kv.weight, attn.kv.bias)
    k, v = kv[..., :c], kv[..., c:]
    q, k, v = (t.reshape(b, n, heads, d) for t in (q, k, v))
    weights = torch.softmax(torch.einsum("bnhd,bmhd->bhnm", q, k) / math.sqrt(d), dim=-1)
    out = torch.einsum("bhnm,bmhd->bnhd", weights, v).reshape(b, n, c)
    return torch.nn.functional.linear(out, attn.proj.weight, attn.proj.bias)


@pytest.mark.parametrize("dims", [2, 3])
def test_efficient_attention_with_ratio_one_is_plain_multi_head_attention(dims):
    torch.manual_seed(0)
    grid = (3, 4, 2)[:dims]
    esa = EfficientSelfAttention(dims, dim=12, num_heads=3, sr_ratio=(1,) * dims).eval()
    x = torch.randn(2, math.prod(grid), 12)
    with torch.no_grad():
        assert esa.reduce is None and torch.equal(esa.keys(x, grid), x)
        torch.testing.assert_close(esa(x, grid), _hand_attention(esa.attention, x, 3))


@pytest.mark.parametrize(("dims", "ratio"), [(2, 2), (2, 4), (3, 2), (3, 4)])
def test_spatial_reduction_shortens_the_keys_by_ratio_to_the_dims(dims, ratio):
    grid = (8, 8, 8)[:dims]
    esa = EfficientSelfAttention(dims, dim=8, num_heads=2, sr_ratio=(ratio,) * dims)
    x = torch.randn(1, math.prod(grid), 8)
    assert esa.keys(x, grid).shape == (1, math.prod(grid) // ratio**dims, 8)
    assert esa(x, grid).shape == x.shape  # queries keep their length


def test_anisotropic_spatial_reduction_reduces_each_axis_by_its_ratio():
    esa = EfficientSelfAttention(3, dim=8, num_heads=2, sr_ratio=(2, 4, 1))
    x = torch.randn(1, 8 * 8 * 4, 8)
    assert esa.keys(x, (8, 8, 4)).shape[1] == 4 * 2 * 4


def test_segformer_b0_has_the_papers_parameter_count():
    """MiT-B0 with the all-MLP decoder on ADE20K (RGB, 150 classes): 3.8 M parameters (Table 1)."""
    model = build_model("segformer", 2, 3, 150, size="b0")
    assert 3.7e6 < count_parameters(model) < 3.85e6
    b1 = build_model("segformer", 2, 3, 150, size="b1")
    assert 13.5e6 < count_parameters(b1) < 14.2e6  # paper: 13.7 M
    assert model.medseg_config["params"]["widths"] == [32, 64, 160, 256]
    assert build_model("segformer", 2, 3, 150, **model.medseg_config["params"]).medseg_config == (
        model.medseg_config
    )


@pytest.mark.parametrize(
    ("params", "needle"),
    [
        ({"size": "b0", "widths": [8, 16, 40, 64]}, "use size 'custom'"),
        ({"size": "custom", "widths": [8, 16]}, "size 'custom' needs depths"),
        (
            {"size": "custom", "widths": [8, 16], "depths": [1, 1], "heads": [1, 3], "sr_ratios": [2, 1]},
            "heads",
        ),
        ({"strides": [4, 2]}, "strides has 2 entries"),
    ],
)
def test_segformer_refuses_inconsistent_layouts(params, needle):
    with pytest.raises(ConfigError, match="segformer") as exc:
        build_model("segformer", 3, 1, 2, **params)
    assert needle in str(exc.value)


def _encoder(dims: int, pos_grid: tuple[int, ...]) -> ViTEncoder:
    torch.manual_seed(0)
    patch = (2,) * dims
    return ViTEncoder(dims, 1, 8, 1, 2, 2.0, patch, pos_grid, layers=[1]).eval()


@pytest.mark.parametrize("dims", [2, 3])
def test_setr_position_embedding_is_unchanged_at_its_reference_grid(dims):
    pos_grid = (3, 4, 5)[:dims]
    enc = _encoder(dims, pos_grid)
    x = torch.randn(2, 1, *(2 * g for g in pos_grid))
    with torch.no_grad():
        tokens, grid = enc.embed(x)
        expected = to_tokens(enc.patch_embedding(x)) + to_tokens(enc.position)
    assert grid == pos_grid
    assert torch.equal(tokens, expected)
    # another grid: the embedding is resized, and each token still gets one embedding vector
    with torch.no_grad():
        other, grid = enc.embed(torch.randn(1, 1, *(2 * g + 4 for g in pos_grid)))
    assert grid == tuple(g + 2 for g in pos_grid) and other.shape == (1, math.prod(grid), 8)


def test_setr_interpolated_position_embedding_exports_to_onnx():
    ort = pytest.importorskip("onnxruntime")
    enc = _encoder(3, (4, 4, 4))

    class Embed(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.enc = enc

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.enc.embed(x)[0]

    x = torch.randn(1, 1, 6, 14, 10)  # grid 3 x 7 x 5: shrunk on one axis, grown on the others
    with torch.no_grad():
        expected = Embed()(x).numpy()
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(Embed(), (x,), buf, opset_version=17, dynamo=False, input_names=["x"])
    (got,) = ort.InferenceSession(buf.getvalue(), providers=["CPUExecutionProvider"]).run(
        None, {"x": x.numpy()}
    )
    assert np.abs(got - expected).max() <= 1e-5


def test_setr_mla_refuses_layers_beyond_depth():
    with pytest.raises(ConfigError) as exc:
        build_model("setr", 3, 1, 2, depth=4, embed_dim=8, heads=2, decoder="mla", mla_layers=[2, 4, 6])
    text = str(exc.value)
    assert "'mla_layers'" in text or "mla_layers" in text
    assert "mla_layers entry 6 is outside the encoder's layers 1 to depth=4" in text
    with pytest.raises(ConfigError, match="only used by decoder 'mla'"):
        build_model("setr", 3, 1, 2, decoder="pup", mla_layers=[12])
    with pytest.raises(ConfigError, match="strictly increasing"):
        build_model("setr", 3, 1, 2, depth=4, decoder="mla", mla_layers=[4, 2, 4])
    model = build_model("setr", 2, 1, 2, depth=8, embed_dim=8, heads=2, decoder="mla")
    assert model.medseg_config["params"]["mla_layers"] == [2, 4, 6, 8]


def _corner_dependence(block: torch.nn.Module, shape: tuple[int, ...], dim: int, **kwargs) -> float:
    """|d output[first token] / d input[last token]| summed: the far corner's influence."""
    torch.manual_seed(0)
    x = torch.randn(1, math.prod(shape), dim, requires_grad=True)
    block(x, **kwargs)[0, 0].sum().backward()
    return float(x.grad[0, -1].abs().sum())


@pytest.mark.parametrize("dims", [2, 3])
def test_one_attention_block_sees_the_far_corner(dims):
    grid = (8, 8, 8)[:dims]
    assert _corner_dependence(TransformerBlock(8, 2, 2.0), grid, 8) > 0
    mit = MiTBlock(dims, 8, 2, (2,) * dims, 2.0, 0.0, 0.0)
    assert _corner_dependence(mit, grid, 8, grid=grid) > 0
    # the Mix-FFN alone is local: its 3x3 depth-wise convolution does not reach the corner
    torch.manual_seed(0)
    x = torch.randn(1, math.prod(grid), 8, requires_grad=True)
    mit.ffn(x, grid)[0, 0].sum().backward()
    assert float(x.grad[0, -1].abs().sum()) == 0


def test_token_layout_round_trips():
    x = torch.randn(2, 5, 3, 4, 6)
    assert torch.equal(to_map(to_tokens(x), (3, 4, 6)), x)
    assert torch.equal(to_tokens(x)[:, 1 * 24 + 2 * 6 + 3], x[:, :, 1, 2, 3])
