"""Stitching network S: MLP that corrects driving keypoints for a seamless paste-back.

Shapes (FULL, K = 21): kp_source, kp_driving (B, K, 3) -> out (B, K, 3).
concat(flatten(kp_source), flatten(kp_driving)) (B, 6K) -> `mlp` Linear/ReLU stack -> delta (B, 3K + 2);
out = kp_driving + delta[:, :3K] as (K, 3), then delta[:, 3K:3K+2] is added to x, y of every keypoint.
State-dict keys: `mlp.{0,2,4,6}.{weight,bias}` (Ditto stores them under `retarget_shoulder`; the
checkpoint loader unwraps that, not this module).
"""

from __future__ import annotations

import torch
from torch import nn

from ditto_triton.profiles import StitchConfig


class StitchingNetwork(nn.Module):
    """S: (kp_source, kp_driving) -> corrected kp_driving, all (B, K, 3)."""

    def __init__(self, cfg: StitchConfig) -> None:
        super().__init__()
        self.num_kp = cfg.num_kp
        sizes = (6 * cfg.num_kp, *cfg.hidden)
        layers: list[nn.Module] = []
        for fan_in, fan_out in zip(sizes[:-1], sizes[1:]):
            layers += [nn.Linear(fan_in, fan_out), nn.ReLU()]
        layers.append(nn.Linear(sizes[-1], 3 * cfg.num_kp + 2))
        self.mlp = nn.Sequential(*layers)

    def forward(self, kp_source: torch.Tensor, kp_driving: torch.Tensor) -> torch.Tensor:
        k3 = 3 * self.num_kp
        delta = self.mlp(torch.cat([kp_source.flatten(1), kp_driving.flatten(1)], dim=1))
        # unflatten (not reshape(-1, K, 3)) so the exporter keeps the static (K, 3) output dims.
        out = kp_driving + delta[:, :k3].unflatten(1, (self.num_kp, 3))
        # Shared (tx, ty) shift on x, y, written as slice + concat rather than an in-place slice update.
        shift_xy = delta[:, k3 : k3 + 2].unsqueeze(1)
        return torch.cat([out[..., :2] + shift_xy, out[..., 2:]], dim=-1)
