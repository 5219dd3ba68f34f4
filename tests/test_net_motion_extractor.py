"""Motion extractor M (ConvNeXt-V2): shapes, output order, checkpoint keys, parameter count, norms."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from ditto_triton.export.networks.motion_extractor import GRN, ChannelsFirstLayerNorm, MotionExtractor
from ditto_triton.profiles import FULL, TINY
from ditto_triton.stages import stage_specs

SPEC = stage_specs(TINY)["motion_extractor"]
HEADS_IN_OUTPUT_ORDER = ("pitch", "yaw", "roll", "t", "exp", "scale", "kp")


@pytest.mark.parametrize("batch", [1, 2])
def test_output_shapes(batch: int) -> None:
    torch.manual_seed(0)
    net = MotionExtractor(TINY.motion).eval()
    with torch.no_grad():
        outs = net(torch.rand(SPEC.inputs[0].example_shape(batch)))
    assert isinstance(outs, tuple)
    assert [tuple(o.shape) for o in outs] == [t.example_shape(batch) for t in SPEC.outputs]


def test_output_order() -> None:
    """Zero head weights and give head i the bias value i: outputs must come back as 0, 1, ..., 6."""
    torch.manual_seed(0)
    net = MotionExtractor(TINY.motion).eval()
    with torch.no_grad():
        for i, name in enumerate(HEADS_IN_OUTPUT_ORDER):
            head = getattr(net.detector, f"fc_{name}")
            head.weight.zero_()
            head.bias.fill_(float(i))
        outs = net(torch.rand(SPEC.inputs[0].example_shape(2)))
    assert [t.name for t in SPEC.outputs] == list(HEADS_IN_OUTPUT_ORDER)
    for i, out in enumerate(outs):
        assert torch.all(out == float(i)), HEADS_IN_OUTPUT_ORDER[i]


def _expected_keys(depths: tuple[int, ...]) -> set[str]:
    keys = {f"detector.downsample_layers.{i}.{j}.{p}" for i in range(4) for j in (0, 1) for p in ("weight", "bias")}
    for i, depth in enumerate(depths):
        for j in range(depth):
            block = f"detector.stages.{i}.{j}"
            keys |= {f"{block}.{m}.{p}" for m in ("dwconv", "norm", "pwconv1", "pwconv2") for p in ("weight", "bias")}
            keys |= {f"{block}.grn.gamma", f"{block}.grn.beta"}
    keys |= {"detector.norm.weight", "detector.norm.bias"}
    heads = ("kp", "scale", "pitch", "yaw", "roll", "t", "exp")
    keys |= {f"detector.fc_{h}.{p}" for h in heads for p in ("weight", "bias")}
    return keys


def test_state_dict_keys_tiny() -> None:
    cfg = TINY.motion
    sd = MotionExtractor(cfg).state_dict()
    assert set(sd) == _expected_keys(cfg.depths)
    assert len(sd) == 212
    d0, d3 = cfg.dims[0], cfg.dims[-1]
    assert tuple(sd["detector.downsample_layers.0.0.weight"].shape) == (d0, 3, 4, 4)
    assert tuple(sd["detector.downsample_layers.0.1.weight"].shape) == (d0,)
    assert tuple(sd["detector.downsample_layers.3.0.bias"].shape) == (cfg.dims[2],)
    assert tuple(sd["detector.downsample_layers.3.1.weight"].shape) == (d3, cfg.dims[2], 2, 2)
    assert tuple(sd["detector.stages.2.8.grn.gamma"].shape) == (1, 1, 1, 4 * cfg.dims[2])
    assert tuple(sd["detector.stages.0.0.dwconv.weight"].shape) == (d0, 1, 7, 7)
    assert tuple(sd["detector.stages.3.2.pwconv1.weight"].shape) == (4 * d3, d3)
    assert tuple(sd["detector.fc_pitch.weight"].shape) == (cfg.num_bins, d3)
    assert tuple(sd["detector.fc_kp.bias"].shape) == (3 * cfg.num_kp,)


def test_full_parameter_count() -> None:
    net = MotionExtractor(FULL.motion)
    assert sum(p.numel() for p in net.parameters()) == 28_118_728
    assert tuple(net.state_dict()["detector.stages.3.2.grn.beta"].shape) == (1, 1, 1, 3072)


def test_channels_first_layer_norm_matches_layer_norm() -> None:
    torch.manual_seed(0)
    norm = ChannelsFirstLayerNorm(8)
    with torch.no_grad():
        norm.weight.normal_()
        norm.bias.normal_()
    x = torch.randn(2, 8, 5, 3) * 3 + 1
    expected = F.layer_norm(x.permute(0, 2, 3, 1), (8,), norm.weight, norm.bias, 1e-6).permute(0, 3, 1, 2)
    torch.testing.assert_close(norm(x), expected, rtol=1e-5, atol=1e-5)


def test_grn_formula() -> None:
    torch.manual_seed(0)
    grn = GRN(6)
    with torch.no_grad():
        grn.gamma.normal_()
        grn.beta.normal_()
    x = torch.randn(2, 4, 5, 6)
    gx = x.pow(2).sum(dim=(1, 2), keepdim=True).sqrt()  # L2 over H, W per channel
    nx = gx / (gx.mean(dim=-1, keepdim=True) + 1e-6)
    torch.testing.assert_close(grn(x), grn.gamma * (x * nx) + grn.beta + x)


def test_batch_rows_independent() -> None:
    torch.manual_seed(0)
    net = MotionExtractor(TINY.motion).eval()
    image = torch.rand(SPEC.inputs[0].example_shape(2))
    with torch.no_grad():
        both = net(image)
        second = net(image[1:])
    for a, b in zip(both, second):
        torch.testing.assert_close(a[1:], b, rtol=1e-5, atol=1e-5)


@pytest.mark.slow
def test_full_forward_shapes() -> None:
    torch.manual_seed(0)
    spec = stage_specs(FULL)["motion_extractor"]
    net = MotionExtractor(FULL.motion).eval()
    with torch.no_grad():
        outs = net(torch.rand(spec.inputs[0].example_shape(1)))
    assert [tuple(o.shape) for o in outs] == [t.example_shape(1) for t in spec.outputs]
