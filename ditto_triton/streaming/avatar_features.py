"""What a streaming session needs of a registered avatar (reference §7.4, §7.5), and how it is computed.

Every field has one row per source frame: one for a photo, n for a video. Generated frame g uses
source frame `mirror_index(g, n)` (the video plays forwards, then backwards, and so on).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ditto_triton.avatar.storage import stored_like
from ditto_triton.face_models import REGISTRATION_MEDIAPIPE
from ditto_triton.streaming.conditions import mirror_index
from ditto_triton.streaming.motion_vector import MOTION_KEYS, info_to_vector, pack_info, unpack_info
from ditto_triton.streaming.smoothing import moving_average
from ditto_triton.streaming.stages import Stages

SOURCE_SMOOTH_K = 13  # Ditto's smo_k_s: temporal mean filter on a video's motion-extractor outputs


@dataclass(frozen=True)
class AvatarFeatures:
    f_s: np.ndarray  # (n, C, D, H, W) appearance feature volumes
    motion_info: np.ndarray  # (n, 328) motion extractor outputs packed in MOTION_KEYS order
    eye_open: np.ndarray  # (n, 2)
    eye_ball: np.ndarray  # (n, 6)
    source_rgb: np.ndarray  # (n, H, W, 3) uint8, the frames rendered faces are pasted into; (H, W, 3) for one
    crop_to_source: np.ndarray  # (n, 3, 3) 512-crop pixels -> source pixels; (3, 3) for one
    shape_condition: np.ndarray | None = None  # sc (3K,): frame 0's keypoints before smoothing; None: from motion_info
    landmarks: np.ndarray | None = None  # (n, N, 2) the points each crop was made from (203: Ditto's)
    registration: str = REGISTRATION_MEDIAPIPE  # "ditto" or "mediapipe" (face_models.py)

    def __post_init__(self) -> None:
        if self.source_rgb.ndim == 3:
            object.__setattr__(self, "source_rgb", self.source_rgb[None])
        object.__setattr__(self, "crop_to_source", np.asarray(self.crop_to_source, np.float32).reshape(-1, 3, 3))
        if self.shape_condition is None:
            object.__setattr__(self, "shape_condition", unpack_info(self.motion_info[0])["kp"].reshape(-1))
        object.__setattr__(self, "shape_condition", np.asarray(self.shape_condition, np.float32).reshape(-1))
        if isinstance(self.registration, (bytes, np.ndarray)):
            text = self.registration.reshape(-1)[0] if isinstance(self.registration, np.ndarray) else self.registration
            object.__setattr__(self, "registration", text.decode() if isinstance(text, bytes) else str(text))
        counts = {
            name: getattr(self, name).shape[0]
            for name in ("f_s", "motion_info", "eye_open", "eye_ball", "source_rgb", "crop_to_source")
        }
        if self.landmarks is not None:
            counts["landmarks"] = self.landmarks.shape[0]
        if len(set(counts.values())) != 1:
            raise ValueError(f"avatar features disagree on the number of source frames: {counts}")

    @property
    def frames(self) -> int:
        """Source frames: 1 for a photo."""
        return self.f_s.shape[0]

    @property
    def nbytes(self) -> int:
        return sum(
            getattr(self, name).nbytes
            for name in ("f_s", "motion_info", "eye_open", "eye_ball", "source_rgb", "crop_to_source")
        )

    @property
    def is_video(self) -> bool:
        return self.frames > 1

    def source_index(self, frame: int | np.ndarray) -> int | np.ndarray:
        """The source frame generated frame(s) `frame` use."""
        index = mirror_index(np.asarray(frame), self.frames)
        return int(index) if index.ndim == 0 else index

    def info_at(self, source: int) -> dict[str, np.ndarray]:
        return unpack_info(self.motion_info[source])

    @property
    def info(self) -> dict[str, np.ndarray]:
        """Source frame 0's motion info."""
        return self.info_at(0)

    @property
    def source_vector(self) -> np.ndarray:
        """(265,) motion vector of source frame 0: the first LMDM window's motion condition."""
        return info_to_vector(self.info)


def extract_features(
    stages: Stages,
    extractor_input: np.ndarray,
    eye_open: np.ndarray,
    eye_ball: np.ndarray,
    source_rgb: np.ndarray,
    crop_to_source: np.ndarray,
    smooth_k: int = SOURCE_SMOOTH_K,
    batch: int = 8,
) -> AvatarFeatures:
    """Run the appearance and motion extractors on the (n, 3, S, S) crops and bundle the results."""
    outputs = run_extractors(stages.infer, extractor_input, batch)
    return features_from_extractors(outputs, eye_open, eye_ball, source_rgb, crop_to_source, smooth_k)


def run_extractors(infer, extractor_input: np.ndarray, batch: int = 8) -> dict[str, np.ndarray]:
    """{`pred`, motion keys: one row per crop}: both extractors over the crops, `batch` at a time;
    `infer(stage, inputs)` runs one stage (in process) or the `extractors` ensemble (by BLS)."""
    parts = []
    for start in range(0, extractor_input.shape[0], batch):
        image = {"image": np.ascontiguousarray(extractor_input[start : start + batch])}
        parts.append({**infer("appearance_extractor", image), **infer("motion_extractor", image)})
    return {k: np.concatenate([p[k] for p in parts]) if len(parts) > 1 else parts[0][k] for k in parts[0]}


def features_from_extractors(
    outputs: dict[str, np.ndarray],
    eye_open: np.ndarray,
    eye_ball: np.ndarray,
    source_rgb: np.ndarray,
    crop_to_source: np.ndarray,
    smooth_k: int = SOURCE_SMOOTH_K,
    landmarks: np.ndarray | None = None,
    registration: str = REGISTRATION_MEDIAPIPE,
) -> AvatarFeatures:
    """Bundle the extractors' outputs (`pred` and the motion keys, one row per source frame) with the
    crops' data; a video's motion info is mean-filtered over time (f_s and the crops are not), and sc
    is frame 0's keypoints before smoothing, as Ditto does. A long video's f_s is memory-mapped."""
    n = outputs["pred"].shape[0]
    motion = np.concatenate([pack_info({k: outputs[k][i : i + 1] for k in MOTION_KEYS}) for i in range(n)])
    return AvatarFeatures(
        f_s=stored_like(np.asarray(outputs["pred"], np.float32)),
        motion_info=moving_average(motion, smooth_k),
        eye_open=np.asarray(eye_open, np.float32).reshape(n, 2),
        eye_ball=np.asarray(eye_ball, np.float32).reshape(n, 6),
        source_rgb=np.ascontiguousarray(source_rgb, np.uint8),
        crop_to_source=np.asarray(crop_to_source, np.float32).reshape(n, 3, 3),
        shape_condition=np.asarray(outputs["kp"][0], np.float32).reshape(-1),
        landmarks=None if landmarks is None else np.asarray(landmarks, np.float32),
        registration=registration,
    )
