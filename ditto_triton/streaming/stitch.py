"""From generated motion to source/driving keypoints (reference §4.2–§4.4), photo and video avatars.

Relative motion in logit space against d0, expression masking (lips and eyes driven, the rest from
the source), per-frame pose offsets, Ditto's gaze fix, then the keypoint transform
x = s * (kp_c R + exp) + (tx, ty). The stitching MLP is applied by the caller as a network stage.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ditto_triton.streaming.motion_vector import vector_to_info

LIP_KP = (6, 12, 14, 17, 19, 20)
EYE_KP = (11, 13, 15, 16, 18)
DRIVEN_KEYS = ("exp", "pitch", "yaw", "roll", "t")
VIDEO_DRIVEN_KEYS = ("exp",)  # a video's own head motion is kept; only the expression (lips) is generated


def bin66_to_degree(pose: np.ndarray) -> np.ndarray:
    """(1, 66) bin logits -> (1,) degrees (3 deg bins centred on 0); degrees pass through unchanged."""
    pose = np.asarray(pose, np.float32)
    if pose.ndim > 1 and pose.shape[1] == 66:
        e = np.exp(pose - pose.max(axis=1, keepdims=True))
        p = e / e.sum(axis=1, keepdims=True)
        return (p * np.arange(66, dtype=np.float32)).sum(axis=1) * 3 - 97.5
    return pose.reshape(-1)


def rotation_matrix(pitch: float, yaw: float, roll: float) -> np.ndarray:
    """Degrees -> (3, 3) matrix M such that row-vector keypoints rotate as kp @ M (= (Rz Ry Rx)^T)."""
    x, y, z = np.radians([pitch, yaw, roll])
    rx = np.array([[1, 0, 0], [0, np.cos(x), -np.sin(x)], [0, np.sin(x), np.cos(x)]])
    ry = np.array([[np.cos(y), 0, np.sin(y)], [0, 1, 0], [-np.sin(y), 0, np.cos(y)]])
    rz = np.array([[np.cos(z), -np.sin(z), 0], [np.sin(z), np.cos(z), 0], [0, 0, 1]])
    return (rz @ ry @ rx).T.astype(np.float32)


def transform_keypoints(info: dict[str, np.ndarray], kp: np.ndarray) -> np.ndarray:
    """Canonical keypoints kp (63,) + pose/exp/scale/t -> (1, 21, 3) implicit keypoints."""
    rot = rotation_matrix(
        float(bin66_to_degree(info["pitch"])[0]),
        float(bin66_to_degree(info["yaw"])[0]),
        float(bin66_to_degree(info["roll"])[0]),
    )
    out = np.asarray(kp, np.float32).reshape(1, -1, 3) @ rot + np.asarray(info["exp"], np.float32).reshape(1, -1, 3)
    out = out * np.asarray(info["scale"], np.float32).reshape(1, 1, 1)
    out[:, :, 0:2] += np.asarray(info["t"], np.float32).reshape(1, 1, 3)[:, :, 0:2]
    return out.astype(np.float32)


def _exp_masks(drive_eye: bool, num_kp: int = 21) -> tuple[np.ndarray, np.ndarray]:
    driven = np.zeros((num_kp, 3), np.float32)
    driven[list(LIP_KP) + (list(EYE_KP) if drive_eye else [])] = 1
    return driven.reshape(1, -1), (1 - driven).reshape(1, -1)


@dataclass(frozen=True)
class FrameControl:
    """What steers one frame on top of the session's options: pose offsets in degrees (added to
    the session's), an expression offset (63 values), and a fade towards the source (1 = none,
    0 = exactly the source's pose and expression)."""

    delta_pitch: float = 0.0
    delta_yaw: float = 0.0
    delta_roll: float = 0.0
    delta_exp: tuple[float, ...] | None = None
    fade: float = 1.0


NO_CONTROL = FrameControl()


class MotionStitcher:
    """Per-session state of Ditto's MotionStitch (no scripted blinks).

    A photo (one source info) drives expression, pose and translation, lips and eyes, with the gaze
    fix. A video (one source info per source frame) keeps each frame's own pose and translation and
    drives the lips only (Ditto's use_d_keys=exp and drive_eye=False for videos).
    `relative` (Ditto's relative_d): driven keys are source + (generated - d0); otherwise the
    generated values themselves."""

    def __init__(
        self,
        source_info: dict[str, np.ndarray] | list[dict[str, np.ndarray]],
        d0_vector: np.ndarray,
        delta_pose: dict[str, float] | None = None,
        relative: bool = True,
    ):
        infos = [source_info] if isinstance(source_info, dict) else list(source_info)
        self.sources = [{k: np.asarray(v, np.float32) for k, v in info.items()} for info in infos]
        self.video = len(self.sources) > 1
        self.driven_keys = VIDEO_DRIVEN_KEYS if self.video else DRIVEN_KEYS
        self.d0 = vector_to_info(d0_vector)
        self.delta_pose = {k: float(v) for k, v in (delta_pose or {}).items()}
        self.relative = relative
        self._a_driven, self._a_source = _exp_masks(drive_eye=not self.video)
        self._x_s = [transform_keypoints(src, src["kp"]) for src in self.sources]
        self._pose_s = tuple(
            float(bin66_to_degree(self.source[k])[0]) for k in ("yaw", "pitch")
        )  # the gaze fix's reference

    @property
    def source(self) -> dict[str, np.ndarray]:
        return self.sources[0]

    @property
    def x_s(self) -> np.ndarray:
        return self._x_s[0]

    def driving_info(
        self, motion_row: np.ndarray, control: FrameControl = NO_CONTROL, source: int = 0
    ) -> dict[str, np.ndarray]:
        """One generated (265,) motion row -> the driving keypoint info (before the keypoint transform),
        against source frame `source`.

        Order as Ditto's MotionStitch: relative motion, expression masks, pose and expression
        offsets, the fade, the gaze fix. Pose keys end up in degrees."""
        src, driven = self.sources[source], self.driven_keys
        d = vector_to_info(motion_row)
        if self.relative:
            info = {k: (src[k] + (d[k] - self.d0[k]) if k in driven else src[k]) for k in src}
        else:
            info = {k: (d[k] if k in driven else src[k]) for k in src}
        info["exp"] = info["exp"] * self._a_driven + src["exp"] * self._a_source
        for key in ("pitch", "yaw", "roll"):
            offset = self.delta_pose.get(f"delta_{key}", 0.0) + getattr(control, f"delta_{key}")
            info[key] = bin66_to_degree(info[key]) + offset
        if control.delta_exp is not None:
            info["exp"] = info["exp"] + np.asarray(control.delta_exp, np.float32).reshape(1, -1)
        if control.fade < 1.0:
            a = np.float32(control.fade)
            for key in driven:
                target = bin66_to_degree(src[key]) if key in ("pitch", "yaw", "roll") else src[key]
                info[key] = info[key] * a + target.reshape(info[key].shape) * (1 - a)
        if not self.video:
            self._fix_gaze(info)
        return info

    def keypoints(
        self, motion_row: np.ndarray, control: FrameControl = NO_CONTROL, source: int = 0
    ) -> tuple[np.ndarray, np.ndarray]:
        """(x_s, x_d) keypoints (1, 21, 3) of one frame against source frame `source`, before stitching."""
        info = self.driving_info(motion_row, control, source)
        return self._x_s[source], transform_keypoints(info, self.sources[source]["kp"])

    def _fix_gaze(self, info: dict[str, np.ndarray]) -> None:
        yaw_s, pitch_s = self._pose_s
        dx = (float(bin66_to_degree(info["yaw"])[0]) - yaw_s) * 0.26
        dy = (float(bin66_to_degree(info["pitch"])[0]) - pitch_s) * 0.28
        exp = info["exp"].copy()
        exp[0, 33] += dx * (0.0007 if dx > 0 else 0.001)
        exp[0, 45] += dx * (0.001 if dx > 0 else 0.0007)
        exp[0, 34] += dy * -0.001
        exp[0, 46] += dy * -0.001
        info["exp"] = exp
