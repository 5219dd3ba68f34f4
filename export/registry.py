"""Which PyTorch module implements each stage, and how its released checkpoint is laid out."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from ditto_triton.profiles import Profile


def _same(module: nn.Module) -> nn.Module:
    return module


def _nothing(module: nn.Module) -> None:
    return None


@dataclass(frozen=True)
class StageNetwork:
    """How to build, load and prepare one stage for export.

    build: the module whose forward *is* the stage's ONNX graph.
    state_module: the part of it that the released checkpoint holds (LMDM's file holds the
        MotionDecoder, not the guided-step wrapper).
    nesting: the key under which the released .pth nests its state dict, if any.
    prepare_export: in-place changes that keep outputs but simplify the graph (spectral-norm folding).
    synthetic: "generic" (seeded initializer) or "constructor" (the library's own seeded init).
    synthetic_tuning: hand-set weights applied after that init, synthetic weights only, so the
        all-synthetic pipeline moves with the speech (`synthetic_speech.py`, `synthetic_face.py`).
    """

    name: str
    build: Callable[[Profile], nn.Module]
    state_module: Callable[[nn.Module], nn.Module] = _same
    nesting: str | None = None
    prepare_export: Callable[[nn.Module], None] = _nothing
    synthetic: str = "generic"
    synthetic_tuning: Callable[[nn.Module, torch.Generator], None] | None = None


def _appearance(p: Profile) -> nn.Module:
    from ditto_triton.export.networks.appearance_extractor import AppearanceFeatureExtractor

    return AppearanceFeatureExtractor(p.appearance)


def _motion(p: Profile) -> nn.Module:
    from ditto_triton.export.networks.motion_extractor import MotionExtractor

    return MotionExtractor(p.motion)


def _warp(p: Profile) -> nn.Module:
    from ditto_triton.export.networks.warp_network import WarpingNetwork

    return WarpingNetwork(p.warp)


def _decoder(p: Profile) -> nn.Module:
    from ditto_triton.export.networks.decoder import SPADEDecoder

    return SPADEDecoder(p.decoder)


def _fold_decoder(module: nn.Module) -> None:
    from ditto_triton.export.networks.decoder import fold_spectral_norm

    fold_spectral_norm(module)


def _stitch(p: Profile) -> nn.Module:
    from ditto_triton.export.networks.stitch_network import StitchingNetwork

    return StitchingNetwork(p.stitch)


def _lmdm(p: Profile) -> nn.Module:
    from ditto_triton.export.networks.lmdm import LMDMStep

    return LMDMStep(p.lmdm)


def _face_motion(module: nn.Module, gen: torch.Generator) -> None:
    from ditto_triton.export.synthetic_face import face_motion_extractor_

    face_motion_extractor_(module, gen)


def _gentle_stitching(module: nn.Module, gen: torch.Generator) -> None:
    from ditto_triton.export.synthetic_face import gentle_stitching_

    gentle_stitching_(module, gen)


def _lip_sync(module: nn.Module, gen: torch.Generator) -> None:
    from ditto_triton.export.synthetic_speech import lip_sync_lmdm_

    lip_sync_lmdm_(module, gen)


def _speech_energy(module: nn.Module, gen: torch.Generator) -> None:
    from ditto_triton.export.synthetic_speech import speech_energy_hubert_

    speech_energy_hubert_(module, gen)


def _hubert(p: Profile) -> nn.Module:
    from ditto_triton.export.networks.hubert import HubertEncoder

    return HubertEncoder(p.hubert)


def _prepare_hubert(module: nn.Module) -> None:
    from ditto_triton.export.networks.hubert import prepare_for_export

    prepare_for_export(module)


STAGE_NETWORKS: dict[str, StageNetwork] = {
    s.name: s
    for s in (
        StageNetwork("appearance_extractor", _appearance),
        StageNetwork("motion_extractor", _motion, synthetic_tuning=_face_motion),
        StageNetwork("warp_network", _warp),
        StageNetwork("decoder", _decoder, prepare_export=_fold_decoder),
        StageNetwork("stitch_network", _stitch, nesting="retarget_shoulder", synthetic_tuning=_gentle_stitching),
        StageNetwork(
            "lmdm", _lmdm, state_module=lambda m: m.model, nesting="model_state_dict", synthetic_tuning=_lip_sync
        ),
        StageNetwork(
            "hubert",
            _hubert,
            prepare_export=_prepare_hubert,
            synthetic="constructor",
            synthetic_tuning=_speech_energy,
        ),
    )
}
