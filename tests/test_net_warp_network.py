"""Warping network W: shapes, checkpoint key layout, parameter count and the motion helpers."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from ditto_triton.export.networks.warp_network import (
    WarpingNetwork,
    keypoint_heatmaps,
    make_coordinate_grid,
    sample_per_motion,
    sparse_motions,
    with_background,
)
from ditto_triton.profiles import FULL, TINY
from ditto_triton.stages import stage_specs

FULL_PARAMS = 45_529_829  # architecture reference §3.3: 45.53 M
BN = ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")


def _inputs(profile, batch: int) -> tuple[torch.Tensor, ...]:
    spec = stage_specs(profile)["warp_network"]
    feature, kp_source, _ = (torch.randn(t.example_shape(batch)) for t in spec.inputs)
    kp_source = 0.3 * kp_source
    return feature, kp_source, kp_source + 0.05 * torch.randn_like(kp_source)


def conv_bn(prefix: str) -> set[str]:
    return {f"{prefix}.conv.{p}" for p in ("weight", "bias")} | {f"{prefix}.norm.{p}" for p in BN}


def _expected_keys(num_blocks: int) -> set[str]:
    dm = "dense_motion_network"
    keys: set[str] = set()
    for i in range(num_blocks):
        keys |= conv_bn(f"{dm}.hourglass.encoder.down_blocks.{i}")
        keys |= conv_bn(f"{dm}.hourglass.decoder.up_blocks.{i}")
    keys |= conv_bn(f"{dm}.hourglass.decoder")
    keys |= {f"{dm}.{name}.{p}" for name in ("mask", "compress", "occlusion") for p in ("weight", "bias")}
    keys |= {f"{dm}.norm.{p}" for p in BN}
    keys |= conv_bn("third")
    keys |= {"fourth.weight", "fourth.bias"}
    return keys


@pytest.fixture(scope="module")
def tiny() -> WarpingNetwork:
    torch.manual_seed(0)
    return WarpingNetwork(TINY.warp).eval()


@pytest.mark.parametrize("batch", [1, 2])
def test_output_shape_tiny(tiny: WarpingNetwork, batch: int) -> None:
    torch.manual_seed(1)
    with torch.no_grad():
        out = tiny(*_inputs(TINY, batch))
    expected = stage_specs(TINY)["warp_network"].outputs[0].example_shape(batch)
    assert tuple(out.shape) == expected == (batch, TINY.warp.out_channels, 16, 16)
    assert torch.isfinite(out).all()


def test_batch_items_are_independent(tiny: WarpingNetwork) -> None:
    """Every reshape keeps batch items apart: item i of a batch equals a batch-1 run on item i."""
    torch.manual_seed(2)
    batch = _inputs(TINY, 2)
    with torch.no_grad():
        joint = tiny(*batch)
        single = [tiny(*(x[i : i + 1] for x in batch)) for i in range(2)]
    torch.testing.assert_close(joint, torch.cat(single), rtol=1e-5, atol=1e-6)


def test_state_dict_keys_tiny(tiny: WarpingNetwork) -> None:
    state = tiny.state_dict()
    assert set(state) == _expected_keys(TINY.warp.dm_num_blocks)
    assert len(state) == 69
    assert "identity_grid" not in state  # constant buffer, not a checkpoint key
    in_features = (TINY.warp.num_kp + 1) * (TINY.warp.dm_compress + 1)  # 44
    out_filters = TINY.warp.dm_block_expansion + in_features  # 48
    shapes = {
        "dense_motion_network.compress.weight": (1, 4, 1, 1, 1),
        "dense_motion_network.hourglass.encoder.down_blocks.0.conv.weight": (8, in_features, 3, 3, 3),
        "dense_motion_network.hourglass.decoder.up_blocks.0.conv.weight": (16, 32, 3, 3, 3),
        "dense_motion_network.hourglass.decoder.up_blocks.1.conv.weight": (8, 32, 3, 3, 3),
        "dense_motion_network.hourglass.decoder.conv.weight": (out_filters, out_filters, 3, 3, 3),
        "dense_motion_network.mask.weight": (22, out_filters, 3, 3, 3),
        "dense_motion_network.occlusion.weight": (1, out_filters * 4, 7, 7),
        "third.conv.weight": (16, 16, 3, 3),
        "fourth.weight": (16, 16, 1, 1),
    }
    for key, shape in shapes.items():
        assert tuple(state[key].shape) == shape, key


def test_full_parameter_count_and_layout() -> None:
    net = WarpingNetwork(FULL.warp)
    assert sum(p.numel() for p in net.parameters()) == FULL_PARAMS
    state = net.state_dict()
    assert set(state) == _expected_keys(5)
    assert len(state) == 97
    assert tuple(state["dense_motion_network.mask.weight"].shape) == (22, 142, 7, 7, 7)
    assert tuple(state["dense_motion_network.occlusion.weight"].shape) == (1, 142 * 16, 7, 7)
    hourglass = "dense_motion_network.hourglass"
    assert tuple(state[f"{hourglass}.encoder.down_blocks.4.conv.weight"].shape) == (1024, 512, 3, 3, 3)
    assert tuple(state[f"{hourglass}.decoder.up_blocks.1.conv.weight"].shape) == (256, 1024, 3, 3, 3)
    assert tuple(state["third.conv.weight"].shape) == (256, 512, 3, 3)


def test_coordinate_grid_axes() -> None:
    grid = make_coordinate_grid(3, 4, 5)
    assert tuple(grid.shape) == (3, 4, 5, 3)
    # Last axis is (x, y, z) = (along W, along H, along D), each linear from -1 to 1.
    torch.testing.assert_close(grid[0, 0, :, 0], torch.linspace(-1, 1, 5))
    torch.testing.assert_close(grid[0, :, 0, 1], torch.linspace(-1, 1, 4))
    torch.testing.assert_close(grid[:, 0, 0, 2], torch.linspace(-1, 1, 3))
    assert (grid[1, 2, :, 1] == grid[1, 2, 0, 1]).all() and (grid[1, :, 3, 2] == grid[1, 0, 3, 2]).all()


def test_identity_grid_samples_input_back() -> None:
    """The grid follows the align_corners=True convention: sampling it that way is the identity.

    The network samples with align_corners=False, as Ditto does, which is a slight zoom, not the identity.
    """
    torch.manual_seed(3)
    volume = torch.randn(2, 3, 4, 6, 5)
    grid = make_coordinate_grid(4, 6, 5).expand(2, -1, -1, -1, -1)
    torch.testing.assert_close(F.grid_sample(volume, grid, align_corners=True), volume, rtol=0, atol=1e-5)
    assert not torch.allclose(F.grid_sample(volume, grid, align_corners=False), volume, atol=1e-3)


def test_equal_keypoints_give_identity_motions_and_zero_heatmaps() -> None:
    torch.manual_seed(4)
    grid = make_coordinate_grid(4, 8, 8)
    kp = with_background(0.5 * torch.randn(2, 21, 3))
    assert (kp[:, 0] == 0).all()
    motions = sparse_motions(grid, kp, kp)
    assert tuple(motions.shape) == (2, 22, 4, 8, 8, 3)
    torch.testing.assert_close(motions, grid.expand_as(motions), rtol=0, atol=1e-6)
    heatmaps = keypoint_heatmaps(grid, kp, kp)
    assert tuple(heatmaps.shape) == (2, 22, 1, 4, 8, 8)
    assert (heatmaps == 0).all()


def test_motions_and_heatmaps_for_shifted_keypoints() -> None:
    torch.manual_seed(5)
    grid = make_coordinate_grid(4, 8, 8)
    kp_source = torch.randn(1, 21, 3) * 0.3
    kp_driving = kp_source + torch.tensor([0.2, -0.1, 0.05])
    motions = sparse_motions(grid, with_background(kp_source), with_background(kp_driving))
    assert (motions[:, 0] == grid).all()  # background motion is exactly the identity grid
    shift = (motions[:, 1:] - grid).reshape(1, 21, -1, 3)
    torch.testing.assert_close(shift, (kp_source - kp_driving).unsqueeze(2).expand_as(shift), rtol=0, atol=1e-6)
    # A driving keypoint on a voxel centre peaks there at 1; the far-away source adds ~nothing.
    kp_d = grid[2, 3, 5].reshape(1, 1, 3)
    kp_s = torch.full((1, 1, 3), 5.0)
    heat = keypoint_heatmaps(grid, with_background(kp_s), with_background(kp_d))
    assert (heat[0, 0] == 0).all()
    assert heat[0, 1, 0, 2, 3, 5] == pytest.approx(1.0)
    assert heat[0, 1].flatten().argmax().item() == (2 * 8 + 3) * 8 + 5


def test_sample_per_motion_matches_one_copy_per_motion() -> None:
    """Stacking the motions along depth equals Ditto's repeat-the-feature-per-motion sampling."""
    torch.manual_seed(6)
    b, c, d, h, w, k = 2, 3, 4, 6, 5, 7
    feature = torch.randn(b, c, d, h, w)
    motions = torch.rand(b, k, d, h, w, 3) * 2.2 - 1.1
    copies = feature.unsqueeze(1).expand(-1, k, -1, -1, -1, -1).reshape(b * k, c, d, h, w)
    expected = F.grid_sample(copies, motions.reshape(b * k, d, h, w, 3), align_corners=False)
    torch.testing.assert_close(sample_per_motion(feature, motions), expected.reshape(b, k, c, d, h, w), rtol=0, atol=0)


def test_hourglass_input_layout(tiny: WarpingNetwork) -> None:
    """Hourglass channels are keypoint-major, heatmap first: channel k * (C + 1) is keypoint k's heatmap."""
    captured: list[torch.Tensor] = []
    hook = tiny.dense_motion_network.hourglass.register_forward_hook(lambda m, args, out: captured.append(args[0]))
    torch.manual_seed(8)
    feature, kp, _ = _inputs(TINY, 2)
    try:
        with torch.no_grad():
            tiny(feature, kp, kp)  # equal keypoints: every heatmap channel is zero
    finally:
        hook.remove()
    c1 = TINY.warp.dm_compress + 1
    hourglass_in = captured[0].reshape(2, TINY.warp.num_kp + 1, c1, *captured[0].shape[2:])
    assert (hourglass_in[:, :, 0] == 0).all()
    assert (hourglass_in[:, :, 1:].abs().sum(dim=(2, 3, 4, 5)) > 0).all()


@pytest.mark.slow
def test_full_forward_shape() -> None:
    torch.manual_seed(7)
    net = WarpingNetwork(FULL.warp).eval()
    with torch.no_grad():
        out = net(*_inputs(FULL, 1))
    assert tuple(out.shape) == (1, 256, 64, 64)
    assert torch.isfinite(out).all()
