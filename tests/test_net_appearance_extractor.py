"""Appearance feature extractor F: shapes, checkpoint keys, parameter count, channel-major reshape."""

from __future__ import annotations

import pytest
import torch

from ditto_triton.export.networks.appearance_extractor import AppearanceFeatureExtractor
from ditto_triton.profiles import FULL, TINY
from ditto_triton.stages import stage_specs

SPEC = stage_specs(TINY)["appearance_extractor"]
BN_KEYS = ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")


@pytest.mark.parametrize("batch", [1, 2])
def test_output_shape(batch: int) -> None:
    torch.manual_seed(0)
    net = AppearanceFeatureExtractor(TINY.appearance).eval()
    with torch.no_grad():
        pred = net(torch.rand(SPEC.inputs[0].example_shape(batch)))
    assert tuple(pred.shape) == SPEC.outputs[0].example_shape(batch)
    assert tuple(pred.shape[1:]) == TINY.appearance.feature_shape


def test_state_dict_keys_tiny() -> None:
    cfg = TINY.appearance
    sd = AppearanceFeatureExtractor(cfg).state_dict()
    expected = {f"first.conv.{p}" for p in ("weight", "bias")} | {f"first.norm.{p}" for p in BN_KEYS}
    for i in range(cfg.num_down_blocks):
        expected |= {f"down_blocks.{i}.conv.{p}" for p in ("weight", "bias")}
        expected |= {f"down_blocks.{i}.norm.{p}" for p in BN_KEYS}
    expected |= {"second.weight", "second.bias"}
    for i in range(cfg.num_resblocks):
        expected |= {f"resblocks_3d.3dr{i}.conv{j}.{p}" for j in (1, 2) for p in ("weight", "bias")}
        expected |= {f"resblocks_3d.3dr{i}.norm{j}.{p}" for j in (1, 2) for p in BN_KEYS}
    assert set(sd) == expected
    assert len(sd) == 107
    c = cfg.reshape_channel
    assert tuple(sd["resblocks_3d.3dr5.conv2.weight"].shape) == (c, c, 3, 3, 3)
    assert tuple(sd["resblocks_3d.3dr0.norm1.running_var"].shape) == (c,)
    assert tuple(sd["second.weight"].shape) == (cfg.max_features, cfg.max_features, 1, 1)


def test_state_dict_shapes_full() -> None:
    sd = AppearanceFeatureExtractor(FULL.appearance).state_dict()
    assert tuple(sd["first.conv.weight"].shape) == (64, 3, 3, 3)
    assert tuple(sd["down_blocks.0.conv.weight"].shape) == (128, 64, 3, 3)
    assert tuple(sd["down_blocks.1.conv.weight"].shape) == (256, 128, 3, 3)
    assert tuple(sd["second.weight"].shape) == (512, 256, 1, 1)
    assert tuple(sd["resblocks_3d.3dr3.conv1.weight"].shape) == (32, 32, 3, 3, 3)


def test_full_parameter_count() -> None:
    assert sum(p.numel() for p in AppearanceFeatureExtractor(FULL.appearance).parameters()) == 836_224


def test_channel_major_split() -> None:
    """With identity res-blocks, pred is `second`'s output viewed as (C, D): channel c*D + d -> (c, d)."""
    torch.manual_seed(0)
    cfg = TINY.appearance
    net = AppearanceFeatureExtractor(cfg).eval()
    with torch.no_grad():
        for block in net.resblocks_3d:
            block.conv2.weight.zero_()
            block.conv2.bias.zero_()
    captured: list[torch.Tensor] = []
    net.second.register_forward_hook(lambda _m, _i, out: captured.append(out))
    with torch.no_grad():
        pred = net(torch.rand(SPEC.inputs[0].example_shape(2)))
    flat = captured[0]
    d = cfg.reshape_depth
    for c, dd in [(0, 0), (0, d - 1), (1, 0), (cfg.reshape_channel - 1, d - 1)]:
        torch.testing.assert_close(pred[:, c, dd], flat[:, c * d + dd], rtol=0, atol=0)


def test_batch_rows_independent() -> None:
    torch.manual_seed(0)
    net = AppearanceFeatureExtractor(TINY.appearance).eval()
    image = torch.rand(SPEC.inputs[0].example_shape(2))
    with torch.no_grad():
        both = net(image)
        second = net(image[1:])
    torch.testing.assert_close(both[1:], second, rtol=1e-5, atol=1e-5)
    assert (both[0] - both[1]).abs().max() > 1e-4


@pytest.mark.slow
def test_full_forward_shape() -> None:
    torch.manual_seed(0)
    spec = stage_specs(FULL)["appearance_extractor"]
    net = AppearanceFeatureExtractor(FULL.appearance).eval()
    with torch.no_grad():
        pred = net(torch.rand(spec.inputs[0].example_shape(1)))
    assert tuple(pred.shape) == spec.outputs[0].example_shape(1) == (1, 32, 16, 64, 64)
