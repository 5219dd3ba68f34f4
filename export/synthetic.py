"""Seeded synthetic weights for networks whose real checkpoints are not at hand.

The values are random but deterministic per seed, and shaped so the parity checks are not trivial:
BatchNorm running statistics and norm affines are randomised (they fold differently at export),
and spectral-norm vectors are the true top singular vectors, so W = weight_orig / sigma behaves as
in a trained checkpoint.
"""

from __future__ import annotations

import math

import torch
from torch import nn

_NORMS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.LayerNorm, nn.GroupNorm)


def _normal(shape: torch.Size, std: float, gen: torch.Generator) -> torch.Tensor:
    return torch.randn(shape, generator=gen) * std


def _fan_in(weight: torch.Tensor) -> int:
    return max(1, math.prod(weight.shape[1:]))


def _init_spectral(module: nn.Module, gen: torch.Generator) -> None:
    w = module.weight_orig
    w.copy_(_normal(w.shape, 1.0 / math.sqrt(_fan_in(w)), gen))
    u, _, vh = torch.linalg.svd(w.reshape(w.shape[0], -1), full_matrices=False)
    module.weight_u.copy_(u[:, 0])
    module.weight_v.copy_(vh[0])


@torch.no_grad()
def synthesize_(model: nn.Module, seed: int) -> nn.Module:
    """Overwrite every parameter and buffer of `model` with seeded synthetic values (in place)."""
    gen = torch.Generator().manual_seed(seed)
    for module in model.modules():
        if getattr(module, "synthetic_keep", False):
            continue
        if hasattr(module, "weight_orig") and hasattr(module, "weight_u"):
            _init_spectral(module, gen)
        elif isinstance(module, (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear)):
            module.weight.copy_(_normal(module.weight.shape, 1.0 / math.sqrt(_fan_in(module.weight)), gen))
        if isinstance(module, _NORMS):
            if module.weight is not None:
                module.weight.copy_(1.0 + _normal(module.weight.shape, 0.1, gen))
                module.bias.copy_(_normal(module.bias.shape, 0.1, gen))
            if getattr(module, "running_mean", None) is not None:
                module.running_mean.copy_(_normal(module.running_mean.shape, 0.1, gen))
                module.running_var.copy_(torch.rand(module.running_var.shape, generator=gen) + 0.5)
            continue
        for name, param in module.named_parameters(recurse=False):
            if name in ("weight", "weight_orig"):
                continue
            if name == "in_proj_weight":
                param.copy_(_normal(param.shape, 1.0 / math.sqrt(param.shape[1]), gen))
            else:
                param.copy_(_normal(param.shape, 0.02 if name.endswith("bias") else 0.1, gen))
    return model
