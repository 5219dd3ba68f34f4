"""What a streaming session needs of a registered avatar (reference §7.4), and how it is computed."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ditto_triton.streaming.motion_vector import MOTION_KEYS, info_to_vector, pack_info, unpack_info
from ditto_triton.streaming.stages import Stages


@dataclass(frozen=True)
class AvatarFeatures:
    f_s: np.ndarray  # (1, C, D, H, W) appearance feature volume
    motion_info: np.ndarray  # (1, 328) motion extractor outputs packed in MOTION_KEYS order
    eye_open: np.ndarray  # (1, 2)
    eye_ball: np.ndarray  # (1, 6)
    source_rgb: np.ndarray  # (H, W, 3) uint8, the photo frames are pasted into
    crop_to_source: np.ndarray  # (3, 3) 512-crop pixels -> photo pixels

    @property
    def info(self) -> dict[str, np.ndarray]:
        return unpack_info(self.motion_info)

    @property
    def source_vector(self) -> np.ndarray:
        """(265,) motion vector of the source: the first LMDM window's motion condition."""
        return info_to_vector(self.info)

    @property
    def shape_condition(self) -> np.ndarray:
        """sc (63,): the source's canonical keypoints."""
        return self.info["kp"].reshape(-1)


def extract_features(
    stages: Stages, extractor_input: np.ndarray, eye_open: np.ndarray, eye_ball: np.ndarray,
    source_rgb: np.ndarray, crop_to_source: np.ndarray,
) -> AvatarFeatures:
    """Run the appearance and motion extractors on the (1, 3, S, S) crop and bundle the results."""
    outputs = {
        **stages.infer("appearance_extractor", {"image": extractor_input}),
        **stages.infer("motion_extractor", {"image": extractor_input}),
    }
    return features_from_extractors(outputs, eye_open, eye_ball, source_rgb, crop_to_source)


def features_from_extractors(
    outputs: dict[str, np.ndarray], eye_open: np.ndarray, eye_ball: np.ndarray,
    source_rgb: np.ndarray, crop_to_source: np.ndarray,
) -> AvatarFeatures:
    """Bundle the extractors' outputs (`pred` and the motion keys, batch 1) with the crop's data."""
    return AvatarFeatures(
        f_s=np.ascontiguousarray(outputs["pred"], np.float32),
        motion_info=pack_info({k: outputs[k] for k in MOTION_KEYS}),
        eye_open=np.asarray(eye_open, np.float32).reshape(1, 2),
        eye_ball=np.asarray(eye_ball, np.float32).reshape(1, 6),
        source_rgb=np.ascontiguousarray(source_rgb, np.uint8),
        crop_to_source=np.asarray(crop_to_source, np.float32).reshape(3, 3),
    )
