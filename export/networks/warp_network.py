"""Warping network W: warp the source feature volume f_s from source to driving keypoints.

Shapes (FULL): feature_3d (B, 32, 16, 64, 64), kp_source (B, 21, 3), kp_driving (B, 21, 3)
-> out (B, 256, 64, 64). Argument order is Ditto's (source before driving; LivePortrait swaps them).

A dense motion network turns the keypoints into a per-voxel deformation and a 2-D occlusion map:
the compressed feature is warped by every keypoint's translation and by the identity (first 5-D
grid_sample, 1 + num_kp motions), stacked with Gaussian heatmap differences, and run through a
3-D hourglass whose output gives softmax weights over the sparse motions and the occlusion logits.
f_s is then warped by the blended deformation (second 5-D grid_sample), flattened to (C*D, H, W)
and projected to 2-D.
State-dict keys: `dense_motion_network.{compress,norm,mask,occlusion}.*`,
`dense_motion_network.hourglass.encoder.down_blocks.{i}.*`,
`dense_motion_network.hourglass.decoder.{up_blocks.{i},conv,norm}.*`, `third.{conv,norm}.*`, `fourth.*`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ditto_triton.export.networks.blocks import DownBlock3d, SameBlock2d, UpBlock3d
from ditto_triton.profiles import WarpConfig

KP_VARIANCE = 0.01


def make_coordinate_grid(
    d: int, h: int, w: int, dtype: torch.dtype = torch.float32, device: torch.device | None = None
) -> torch.Tensor:
    """(d, h, w, 3) grid of normalised (x, y, z) coordinates, x along W, y along H, z along D.

    Each axis is `2 * i / (n - 1) - 1`, i.e. the align_corners=True convention, although every
    grid_sample here uses align_corners=False: that mismatch is Ditto's and is kept on purpose.
    """
    z, y, x = (2 * (torch.arange(n, dtype=dtype, device=device) / (n - 1)) - 1 for n in (d, h, w))
    zz, yy, xx = torch.meshgrid(z, y, x, indexing="ij")
    return torch.stack([xx, yy, zz], dim=-1)


def with_background(kp: torch.Tensor) -> torch.Tensor:
    """(B, K, 3) -> (B, 1 + K, 3): prepend an all-zero "background" keypoint."""
    return torch.cat([torch.zeros_like(kp[:, :1]), kp], dim=1)


def _as_volume(kp: torch.Tensor) -> torch.Tensor:
    """(B, K, 3) -> (B, K, 1, 1, 1, 3), broadcastable against a (d, h, w, 3) grid."""
    return kp.unsqueeze(2).unsqueeze(2).unsqueeze(2)


def sparse_motions(identity_grid: torch.Tensor, kp_source: torch.Tensor, kp_driving: torch.Tensor) -> torch.Tensor:
    """(B, K', d, h, w, 3): grid - kp_driving[k] + kp_source[k] for each of the K' keypoints.

    Called with `with_background` keypoints, entry 0 is exactly the identity grid (Ditto's background
    motion). The operation order (subtract driving, then add source) is Ditto's.
    """
    return identity_grid - _as_volume(kp_driving) + _as_volume(kp_source)


def keypoint_heatmaps(identity_grid: torch.Tensor, kp_source: torch.Tensor, kp_driving: torch.Tensor) -> torch.Tensor:
    """(B, K', 1, d, h, w): Gaussian(kp_driving) - Gaussian(kp_source), variance 0.01.

    With `with_background` keypoints both Gaussians of entry 0 are the same computation on the same
    zeros, so the background channel is exactly zero, as in Ditto.
    """

    def gaussian(kp: torch.Tensor) -> torch.Tensor:
        return torch.exp(-0.5 * ((identity_grid - _as_volume(kp)) ** 2).sum(-1) / KP_VARIANCE)

    return (gaussian(kp_driving) - gaussian(kp_source)).unsqueeze(2)


def grid_sample_fp32(volume: torch.Tensor, grid: torch.Tensor) -> torch.Tensor:
    """5-D trilinear grid_sample (zeros padding, align_corners=False), always computed in fp32.

    Ditto pins both GridSample layers of its fp16 warp engine to fp32 (the sampled coordinates lose
    too much in fp16); under autocast or with half inputs this does the same. An fp32 call without
    autocast (ONNX export, CPU) is the plain op, so the exported graph is unchanged.
    """
    device = volume.device.type
    if volume.dtype == grid.dtype == torch.float32 and not torch.is_autocast_enabled(device):
        return F.grid_sample(volume, grid, align_corners=False)
    with torch.autocast(device, enabled=False):
        return F.grid_sample(volume.float(), grid.float(), align_corners=False)


def sample_per_motion(feature: torch.Tensor, motions: torch.Tensor) -> torch.Tensor:
    """Warp (B, C, d, h, w) by each of K' grids (B, K', d, h, w, 3) -> (B, K', C, d, h, w).

    Ditto repeats the feature K' times along batch and samples each copy with its own grid. Stacking
    the K' grids along the grid's depth axis samples the same voxels from one copy instead: identical
    values, one 5-D grid_sample over batch B, and no K'-fold copy of the feature.
    """
    b, c, d, h, w = feature.shape
    k = motions.shape[1]
    sampled = grid_sample_fp32(feature, motions.reshape(b, k * d, h, w, 3))
    return sampled.reshape(b, c, k, d, h, w).transpose(1, 2)


class HourglassEncoder(nn.Module):
    """`down_blocks.{i}`: DownBlock3d chain; returns the input and every block output (skips)."""

    def __init__(self, block_expansion: int, in_features: int, num_blocks: int, max_features: int) -> None:
        super().__init__()
        blocks = []
        for i in range(num_blocks):
            fin = in_features if i == 0 else min(max_features, block_expansion * 2**i)
            fout = min(max_features, block_expansion * 2 ** (i + 1))
            blocks.append(DownBlock3d(fin, fout))
        self.down_blocks = nn.ModuleList(blocks)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        outs = [x]
        for block in self.down_blocks:
            outs.append(block(outs[-1]))
        return outs


class HourglassDecoder(nn.Module):
    """`up_blocks.{i}` (UpBlock3d + skip concat), then `conv` k3 + `norm` + ReLU."""

    def __init__(self, block_expansion: int, in_features: int, num_blocks: int, max_features: int) -> None:
        super().__init__()
        blocks = []
        for i in reversed(range(num_blocks)):
            # Every block but the deepest sees its predecessor's output concatenated with a skip.
            fin = (1 if i == num_blocks - 1 else 2) * min(max_features, block_expansion * 2 ** (i + 1))
            fout = min(max_features, block_expansion * 2**i)
            blocks.append(UpBlock3d(fin, fout))
        self.up_blocks = nn.ModuleList(blocks)
        self.out_filters = block_expansion + in_features
        self.conv = nn.Conv3d(self.out_filters, self.out_filters, kernel_size=3, padding=1)
        self.norm = nn.BatchNorm3d(self.out_filters, affine=True)

    def forward(self, skips: list[torch.Tensor]) -> torch.Tensor:
        out = skips[-1]
        for block, skip in zip(self.up_blocks, reversed(skips[:-1])):
            out = torch.cat([block(out), skip], dim=1)
        return F.relu(self.norm(self.conv(out)))


class Hourglass(nn.Module):
    """3-D U-Net: (B, in_features, d, h, w) -> (B, block_expansion + in_features, d, h, w)."""

    def __init__(self, block_expansion: int, in_features: int, num_blocks: int, max_features: int) -> None:
        super().__init__()
        self.encoder = HourglassEncoder(block_expansion, in_features, num_blocks, max_features)
        self.decoder = HourglassDecoder(block_expansion, in_features, num_blocks, max_features)
        self.out_filters = self.decoder.out_filters

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.encoder(x))


class DenseMotionNetwork(nn.Module):
    """(f_s, kp_source, kp_driving) -> deformation (B, d, h, w, 3) and occlusion map (B, 1, h, w)."""

    def __init__(self, cfg: WarpConfig) -> None:
        super().__init__()
        self.num_kp = cfg.num_kp
        self.compress_channels = cfg.dm_compress
        in_features = (cfg.num_kp + 1) * (cfg.dm_compress + 1)
        self.hourglass = Hourglass(cfg.dm_block_expansion, in_features, cfg.dm_num_blocks, cfg.dm_max_features)
        out_filters = self.hourglass.out_filters
        self.mask = nn.Conv3d(
            out_filters, cfg.num_kp + 1, kernel_size=cfg.dm_mask_kernel, padding=cfg.dm_mask_kernel // 2
        )
        self.compress = nn.Conv3d(cfg.reshape_channel, cfg.dm_compress, kernel_size=1)
        self.norm = nn.BatchNorm3d(cfg.dm_compress, affine=True)
        self.occlusion = nn.Conv2d(
            out_filters * cfg.reshape_depth, 1, kernel_size=cfg.occlusion_kernel, padding=cfg.occlusion_kernel // 2
        )

    def forward(
        self, feature: torch.Tensor, kp_source: torch.Tensor, kp_driving: torch.Tensor, identity_grid: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        # Only the batch size is read from a tensor; the other sizes are Python ints from the grid
        # buffer, so ONNX shape inference keeps every non-batch axis static.
        b = feature.shape[0]
        d, h, w, _ = identity_grid.shape
        c, k1 = self.compress_channels, self.num_kp + 1
        feature = F.relu(self.norm(self.compress(feature)))

        kp_source, kp_driving = with_background(kp_source), with_background(kp_driving)
        motions = sparse_motions(identity_grid, kp_source, kp_driving)
        deformed = sample_per_motion(feature, motions)
        heatmap = keypoint_heatmaps(identity_grid, kp_source, kp_driving)
        hourglass_in = torch.cat([heatmap, deformed], dim=2).reshape(b, k1 * (c + 1), d, h, w)
        prediction = self.hourglass(hourglass_in)

        weights = F.softmax(self.mask(prediction), dim=1)
        deformation = (motions * weights.unsqueeze(-1)).sum(dim=1)

        # Occlusion sees the prediction with depth folded into channels (channel-major: c * d + z).
        folded = prediction.reshape(b, self.hourglass.out_filters * d, h, w)
        occlusion = torch.sigmoid(self.occlusion(folded))
        return deformation, occlusion


class WarpingNetwork(nn.Module):
    """W: (feature_3d, kp_source, kp_driving) -> out (B, cfg.out_channels, H, W)."""

    def __init__(self, cfg: WarpConfig) -> None:
        super().__init__()
        if cfg.max_features != cfg.reshape_channel * cfg.reshape_depth:
            raise ValueError("max_features must equal reshape_channel * reshape_depth")
        self.dense_motion_network = DenseMotionNetwork(cfg)
        self.third = SameBlock2d(cfg.max_features, cfg.out_channels, lrelu=True)
        self.fourth = nn.Conv2d(cfg.out_channels, cfg.out_channels, kernel_size=1)
        self.flat_shape = (cfg.max_features, cfg.feature_size, cfg.feature_size)
        # Built once from the configured volume size, so ONNX sees a constant broadcast over batch.
        # Not persistent: the released checkpoint has no such key.
        grid = make_coordinate_grid(cfg.reshape_depth, cfg.feature_size, cfg.feature_size)
        self.register_buffer("identity_grid", grid, persistent=False)

    def forward(self, feature_3d: torch.Tensor, kp_source: torch.Tensor, kp_driving: torch.Tensor) -> torch.Tensor:
        grid = self.identity_grid.to(feature_3d.dtype)
        deformation, occlusion = self.dense_motion_network(feature_3d, kp_source, kp_driving, grid)
        # Second 5-D grid_sample: warp the full-width feature volume.
        warped = grid_sample_fp32(feature_3d, deformation)
        out = self.fourth(self.third(warped.reshape(feature_3d.shape[0], *self.flat_shape)))
        return out * occlusion
