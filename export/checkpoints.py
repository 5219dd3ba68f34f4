"""Read and write checkpoints in the exact layout of Ditto's released `ditto_pytorch/models/*.pth`.

Files are read with `torch.load(weights_only=True)` only: no arbitrary object is ever unpickled.
Every mismatch is reported with the file, the key and the expected vs found shape.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import torch
from torch import nn


class CheckpointError(ValueError):
    """A checkpoint file that cannot be loaded into the network it is meant for."""


def read_state_dict(path: Path, nesting: str | None = None) -> dict[str, torch.Tensor]:
    """Load a state dict from a released-layout file, unwrapping `nesting` and DDP `module.` prefixes."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint file not found")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises several types for corrupt / unsafe files
        raise CheckpointError(f"{path}: not a loadable weights-only checkpoint ({type(exc).__name__}: {exc})") from exc
    if nesting is not None:
        if not isinstance(obj, Mapping) or nesting not in obj:
            found = sorted(obj)[:8] if isinstance(obj, Mapping) else type(obj).__name__
            raise CheckpointError(f"{path}: expected the state dict under key {nesting!r}; found {found}")
        obj = obj[nesting]
    if not isinstance(obj, Mapping):
        raise CheckpointError(f"{path}: expected a state dict (mapping), found {type(obj).__name__}")
    state: dict[str, torch.Tensor] = {}
    for key, value in obj.items():
        if not isinstance(value, torch.Tensor):
            raise CheckpointError(f"{path}: key {key!r} holds {type(value).__name__}, expected a tensor")
        state[key.removeprefix("module.")] = value
    return state


def load_strict(module: nn.Module, state: Mapping[str, torch.Tensor], source: Path | str) -> None:
    """Load `state` into `module`, refusing any missing, unexpected or mis-shaped key."""
    expected = module.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(f"missing keys ({len(missing)}): {missing[:5]}")
        if unexpected:
            parts.append(f"unexpected keys ({len(unexpected)}): {unexpected[:5]}")
        raise CheckpointError(f"{source}: state dict does not match {type(module).__name__}: " + "; ".join(parts))
    for key, ref in expected.items():
        found = state[key]
        if tuple(found.shape) != tuple(ref.shape):
            raise CheckpointError(
                f"{source}: key {key!r} has shape {tuple(found.shape)}, expected {tuple(ref.shape)} "
                f"(is this checkpoint for another profile?)"
            )
        if found.is_floating_point() != ref.is_floating_point():
            raise CheckpointError(f"{source}: key {key!r} has dtype {found.dtype}, expected {ref.dtype}")
    module.load_state_dict({k: v.to(expected[k].dtype) for k, v in state.items()}, strict=True)


def load_checkpoint(module: nn.Module, path: Path, nesting: str | None = None) -> None:
    load_strict(module, read_state_dict(path, nesting), path)


def write_checkpoint(module: nn.Module, path: Path, nesting: str | None = None) -> None:
    """Write `module`'s state dict in the released layout (nested under `nesting` when given)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().clone().contiguous() for k, v in module.state_dict().items()}
    torch.save({nesting: state} if nesting else state, path)
