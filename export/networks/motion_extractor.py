"""Motion extractor M: face image -> head pose bins, translation, expression, scale, canonical keypoints.

Backbone is ConvNeXt-V2 (tiny in FULL: depths 3/3/9/3, dims 96/192/384/768) with GRN blocks, then
global average pooling, a LayerNorm and seven linear heads.
Shapes (FULL): image (B, 3, 256, 256) -> pitch, yaw, roll (B, 66) bin logits, t (B, 3),
exp (B, 63), scale (B, 1), kp (B, 63), returned in that order.
State-dict keys live under `detector.` (`downsample_layers.*`, `stages.{i}.{j}.*`, `norm.*`, `fc_*`).
"""

from __future__ import annotations

import torch
from torch import nn

from ditto_triton.profiles import MotionConfig

_EPS = 1e-6


class ChannelsFirstLayerNorm(nn.Module):
    """LayerNorm over the channel axis of an NCHW tensor (keys `weight`, `bias`).

    Written with mean/pow/sqrt so it exports as plain elementwise ONNX ops.
    """

    def __init__(self, channels: int, eps: float = _EPS) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mean = x.mean(1, keepdim=True)
        var = (x - mean).pow(2).mean(1, keepdim=True)
        x = (x - mean) / torch.sqrt(var + self.eps)
        return self.weight[:, None, None] * x + self.bias[:, None, None]


class GRN(nn.Module):
    """Global Response Normalization on NHWC input; `gamma`, `beta` have shape (1, 1, 1, dim)."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.gamma = nn.Parameter(torch.zeros(1, 1, 1, dim))
        self.beta = nn.Parameter(torch.zeros(1, 1, 1, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gx = torch.linalg.vector_norm(x, ord=2, dim=(1, 2), keepdim=True)
        nx = gx / (gx.mean(dim=-1, keepdim=True) + _EPS)
        return self.gamma * (x * nx) + self.beta + x


class Block(nn.Module):
    """ConvNeXt-V2 block: dwconv 7x7 -> LN -> Linear 4x -> GELU -> GRN -> Linear -> residual."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.dwconv = nn.Conv2d(dim, dim, kernel_size=7, padding=3, groups=dim)
        self.norm = nn.LayerNorm(dim, eps=_EPS)
        self.pwconv1 = nn.Linear(dim, 4 * dim)
        self.act = nn.GELU()
        self.grn = GRN(4 * dim)
        self.pwconv2 = nn.Linear(4 * dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.dwconv(x).permute(0, 2, 3, 1)
        y = self.pwconv2(self.grn(self.act(self.pwconv1(self.norm(y)))))
        return x + y.permute(0, 3, 1, 2)


class ConvNeXtV2(nn.Module):
    """Backbone plus the seven regression heads; returns (pitch, yaw, roll, t, exp, scale, kp)."""

    def __init__(self, cfg: MotionConfig, in_chans: int = 3) -> None:
        super().__init__()
        dims, depths = cfg.dims, cfg.depths
        if len(dims) != len(depths):
            raise ValueError("MotionConfig.dims and depths must have the same length")
        self.downsample_layers = nn.ModuleList(
            [nn.Sequential(nn.Conv2d(in_chans, dims[0], kernel_size=4, stride=4), ChannelsFirstLayerNorm(dims[0]))]
        )
        for i in range(len(dims) - 1):
            self.downsample_layers.append(
                nn.Sequential(ChannelsFirstLayerNorm(dims[i]), nn.Conv2d(dims[i], dims[i + 1], kernel_size=2, stride=2))
            )
        self.stages = nn.ModuleList(
            nn.Sequential(*[Block(dim) for _ in range(depth)]) for dim, depth in zip(dims, depths)
        )
        self.norm = nn.LayerNorm(dims[-1], eps=_EPS)

        width, kp3 = dims[-1], 3 * cfg.num_kp
        self.fc_kp = nn.Linear(width, kp3)
        self.fc_scale = nn.Linear(width, 1)
        self.fc_pitch = nn.Linear(width, cfg.num_bins)
        self.fc_yaw = nn.Linear(width, cfg.num_bins)
        self.fc_roll = nn.Linear(width, cfg.num_bins)
        self.fc_t = nn.Linear(width, 3)
        self.fc_exp = nn.Linear(width, kp3)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        for down, stage in zip(self.downsample_layers, self.stages):
            x = stage(down(x))
        x = self.norm(x.mean(dim=(-2, -1)))
        return (
            self.fc_pitch(x),
            self.fc_yaw(x),
            self.fc_roll(x),
            self.fc_t(x),
            self.fc_exp(x),
            self.fc_scale(x),
            self.fc_kp(x),
        )


class MotionExtractor(nn.Module):
    """M: (B, 3, S, S) -> pitch, yaw, roll (B, bins), t (B, 3), exp (B, 3K), scale (B, 1), kp (B, 3K)."""

    def __init__(self, cfg: MotionConfig) -> None:
        super().__init__()
        self.detector = ConvNeXtV2(cfg)

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return self.detector(image)
