"""Where each stage's weights come from: Ditto's released files, or seeded synthetic checkpoints.

Synthetic weights are written to disk in the released layout and read back through the same strict
loader as real ones, so the code path that serves the real model is the one every test exercises.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ditto_triton.export.checkpoints import CheckpointError, load_checkpoint, write_checkpoint
from ditto_triton.export.registry import StageNetwork
from ditto_triton.export.synthetic import synthesize_
from ditto_triton.manifest import SYNTHETIC_WEIGHTS_VERSION, sha256_file
from ditto_triton.profiles import Profile
from ditto_triton.stages import STAGE_ORDER, StageSpec

SYNTHETIC = "synthetic"
# Ditto ships HuBERT only as ONNX; these names are tried in order inside the weights directory.
HUBERT_ONNX_NAMES = ("aux_models/hubert_streaming_fix_kv.onnx", "hubert_streaming_fix_kv.onnx", "hubert.onnx")
HUBERT_CHECKPOINT_NAMES = ("aux_models/hubert.safetensors", "aux_models/hubert.pth", "hubert.safetensors", "hubert.pth")


def models_dir(weights_dir: Path) -> Path:
    """Accept `ditto_pytorch/` (holding `models/`) or the `models/` directory itself."""
    weights_dir = Path(weights_dir)
    if not weights_dir.is_dir():
        raise CheckpointError(f"{weights_dir}: weights directory not found")
    nested = weights_dir / "models"
    return nested if nested.is_dir() else weights_dir


@dataclass(frozen=True)
class LoadedStage:
    module: nn.Module | None  # None when a user-supplied ONNX replaces our export
    source: dict[str, Any]
    onnx_file: Path | None = None


def stage_seed(seed: int, name: str) -> int:
    return seed * 100 + STAGE_ORDER.index(name)


def _synthetic(net: StageNetwork, spec: StageSpec, profile: Profile, seed: int, scratch: Path) -> LoadedStage:
    s = stage_seed(seed, net.name)
    torch.manual_seed(s)
    module = net.build(profile)
    if net.synthetic == "generic":
        synthesize_(net.state_module(module), s)
    if net.synthetic_tuning is not None:
        net.synthetic_tuning(module, torch.Generator().manual_seed(s))
    fresh = net.build(profile)
    if spec.checkpoint_file is None:
        path = scratch / f"{net.name}.pth"
        _save_plain(net.state_module(module), path)
        _load_aux(fresh, path)
    else:
        path = scratch / "models" / spec.checkpoint_file
        write_checkpoint(net.state_module(module), path, net.nesting)
        load_checkpoint(net.state_module(fresh), path, net.nesting)
    source = {"kind": SYNTHETIC, "seed": s, "synthetic_version": SYNTHETIC_WEIGHTS_VERSION}
    return LoadedStage(fresh, {**source, "checkpoint": str(path), "sha256": sha256_file(path)})


def _save_plain(module: nn.Module, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({k: v.detach().clone() for k, v in module.state_dict().items()}, path)


def _load_aux(module: nn.Module, path: Path) -> None:
    from ditto_triton.export.networks.hubert import load_hubert_state_dict

    load_hubert_state_dict(module, path)


def _real_hubert(net: StageNetwork, profile: Profile, weights_dir: Path) -> LoadedStage | None:
    from ditto_triton.export.networks.hubert import check_hubert_onnx

    root = Path(weights_dir)
    for rel in HUBERT_ONNX_NAMES:
        path = root / rel
        if path.is_file():
            check_hubert_onnx(path, profile.hubert)
            return LoadedStage(None, {"kind": "onnx", "path": str(path), "sha256": sha256_file(path)}, path)
    for rel in HUBERT_CHECKPOINT_NAMES:
        path = root / rel
        if path.is_file():
            module = net.build(profile)
            _load_aux(module, path)
            return LoadedStage(module, {"kind": "checkpoint", "path": str(path), "sha256": sha256_file(path)})
    return None


def load_stage(
    net: StageNetwork, spec: StageSpec, profile: Profile, weights: str | Path, seed: int, scratch: Path
) -> LoadedStage:
    """Build the stage's module and fill it from `weights` (a directory, or "synthetic")."""
    if str(weights) == SYNTHETIC:
        return _synthetic(net, spec, profile, seed, scratch)
    if spec.checkpoint_file is None:
        found = _real_hubert(net, profile, Path(weights))
        if found is not None:
            return found
        loaded = _synthetic(net, spec, profile, seed, scratch)
        note = f"no HuBERT ONNX ({', '.join(HUBERT_ONNX_NAMES)}) or checkpoint in {weights}; synthetic HuBERT used"
        return LoadedStage(loaded.module, {**loaded.source, "note": note})
    path = models_dir(Path(weights)) / spec.checkpoint_file
    module = net.build(profile)
    load_checkpoint(net.state_module(module), path, net.nesting)
    return LoadedStage(module, {"kind": "checkpoint", "path": str(path), "sha256": sha256_file(path)})


def load_checkpoint_module(net: StageNetwork, spec: StageSpec, profile: Profile, path: Path) -> nn.Module:
    """The stage's module filled from one checkpoint file in the released layout (HuBERT: a plain
    HubertModel state dict), prepared as for export (spectral norm / weight norm folded), in eval mode."""
    module = net.build(profile)
    if spec.checkpoint_file is None:
        _load_aux(module, path)
    else:
        load_checkpoint(net.state_module(module), Path(path), net.nesting)
    net.prepare_export(module)
    return module.eval()
