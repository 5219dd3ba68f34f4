"""Appearance feature extractor F: source face crop -> 3-D appearance feature volume f_s.

Shapes (FULL): image (B, 3, 256, 256) RGB in [0, 1] -> pred (B, 32, 16, 64, 64).
A 2-D encoder (`first`, `down_blocks`, 1x1 `second`) produces C*D channels at S/4 x S/4; they are
split channel-major into (C, D) and refined by pre-activation 3-D residual blocks.
State-dict keys: `first.*`, `down_blocks.{i}.*`, `second.*`, `resblocks_3d.3dr{i}.*`.
"""

from __future__ import annotations

import torch
from torch import nn

from ditto_triton.export.networks.blocks import DownBlock2d, ResBlock3d, SameBlock2d
from ditto_triton.profiles import AppearanceConfig


class AppearanceFeatureExtractor(nn.Module):
    """F: (B, 3, S, S) -> (B, reshape_channel, reshape_depth, S/4, S/4)."""

    def __init__(self, cfg: AppearanceConfig) -> None:
        super().__init__()
        if cfg.max_features != cfg.reshape_channel * cfg.reshape_depth:
            raise ValueError("max_features must equal reshape_channel * reshape_depth")
        self.reshape_channel = cfg.reshape_channel
        self.reshape_depth = cfg.reshape_depth

        self.first = SameBlock2d(cfg.image_channel, cfg.block_expansion)
        blocks = []
        out_features = cfg.block_expansion
        for i in range(cfg.num_down_blocks):
            in_features = min(cfg.max_features, cfg.block_expansion * 2**i)
            out_features = min(cfg.max_features, cfg.block_expansion * 2 ** (i + 1))
            blocks.append(DownBlock2d(in_features, out_features))
        self.down_blocks = nn.ModuleList(blocks)
        self.second = nn.Conv2d(out_features, cfg.max_features, kernel_size=1)

        self.resblocks_3d = nn.Sequential()
        for i in range(cfg.num_resblocks):
            # Checkpoint names these "3dr{i}", not "{i}", so they are added by name.
            self.resblocks_3d.add_module(f"3dr{i}", ResBlock3d(cfg.reshape_channel))

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        out = self.first(image)
        for block in self.down_blocks:
            out = block(out)
        out = self.second(out)
        b, _, h, w = out.shape
        f_s = out.view(b, self.reshape_channel, self.reshape_depth, h, w)
        return self.resblocks_3d(f_s)
