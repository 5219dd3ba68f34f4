"""Ditto's 265-d motion vector and the motion extractor's keypoint info (reference §4.1).

Vector layout: [scale - 1 (1) | pitch bins (66) | yaw bins (66) | roll bins (66) | t (3) | exp (63)].
Pose stays as 66-bin logits until keypoints are built; `kp` (canonical keypoints) is not part of it.
"""

from __future__ import annotations

import numpy as np

from ditto_triton import protocol

MOTION_KEYS = ("pitch", "yaw", "roll", "t", "exp", "scale", "kp")  # motion extractor output order
VECTOR_SLICES = {
    "scale": slice(0, 1),
    "pitch": slice(1, 67),
    "yaw": slice(67, 133),
    "roll": slice(133, 199),
    "t": slice(199, 202),
    "exp": slice(202, 265),
}
MOTION_DIM = protocol.MOTION_DIM
POSE_DIMS = 202  # [0:202] = scale, pose, t: the smoothed / carried part


def pack_info(info: dict[str, np.ndarray]) -> np.ndarray:
    """Motion-extractor outputs -> one (1, 328) row in `MOTION_KEYS` order (the avatar cache format)."""
    return np.concatenate([np.asarray(info[k], np.float32).reshape(1, -1) for k in MOTION_KEYS], axis=1)


def unpack_info(row: np.ndarray, num_bins: int = 66, num_kp: int = 21) -> dict[str, np.ndarray]:
    sizes = {
        "pitch": num_bins,
        "yaw": num_bins,
        "roll": num_bins,
        "t": 3,
        "exp": 3 * num_kp,
        "scale": 1,
        "kp": 3 * num_kp,
    }
    row = np.asarray(row, np.float32).reshape(-1)
    if row.size != sum(sizes.values()):
        raise ValueError(f"motion info has {row.size} values, expected {sum(sizes.values())}")
    out, start = {}, 0
    for key in MOTION_KEYS:
        out[key] = row[start : start + sizes[key]].reshape(1, -1)
        start += sizes[key]
    return out


def info_to_vector(info: dict[str, np.ndarray]) -> np.ndarray:
    """Keypoint info -> (265,) motion vector (scale stored as scale - 1)."""
    vec = np.zeros(MOTION_DIM, np.float32)
    for key, sl in VECTOR_SLICES.items():
        value = np.asarray(info[key], np.float32).reshape(-1)
        vec[sl] = value - 1.0 if key == "scale" else value
    return vec


def vector_to_info(vec: np.ndarray) -> dict[str, np.ndarray]:
    """(265,) motion vector -> keypoint info without `kp` (scale restored)."""
    vec = np.asarray(vec, np.float32).reshape(-1)
    info = {key: vec[sl].reshape(1, -1).copy() for key, sl in VECTOR_SLICES.items()}
    info["scale"] = info["scale"] + 1.0
    return info
