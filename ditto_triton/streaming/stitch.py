"""From generated motion to source/driving keypoints: Ditto's MotionStitch (reference §4.2–§4.5, §8.1, §8.2).

Per frame, in Ditto's order: the frame's controls merged over the session's (`overall_ctrl_info`:
a per-frame value replaces the overall one), relative motion against d0 (`relative_d`) on the
driven keys (`use_d_keys`, a tuple or {key: weight}; a reference character's scale ratio weights
exp and pose), the expression mask (lips, and eyes when `drive_eye`) with the scripted blink
(`delta_eye_arr` on the frames `delta_eye_open_n` schedules), `vad_alpha`, pose offsets and
multipliers and `delta_exp`, the fade (`fade_alpha` towards d0 or the source on `fade_out_keys`,
with `fade_type` "d0" or "s"), the gaze fix, then the keypoint transform
x = s * (kp_c R + exp) + (tx, ty). The stitching MLP (`flag_stitching`) runs as a network stage.
Arithmetic is float32 array arithmetic as in Ditto's code.
"""

from __future__ import annotations

import copy
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ditto_triton.streaming.motion_vector import vector_to_info

LIP_KP = (6, 12, 14, 17, 19, 20)
EYE_KP = (11, 13, 15, 16, 18)
IMAGE_D_KEYS = ("exp", "pitch", "yaw", "roll", "t")
VIDEO_D_KEYS = ("exp",)  # a video's own head motion is kept; only the expression (lips) is generated
POSE = ("pitch", "yaw", "roll")
# Per-frame keys MotionStitch reads (ctrl_info / overall_ctrl_info)
CTRL_KEYS = (
    *(f"delta_{k}" for k in POSE),
    *(f"alpha_{k}" for k in POSE),
    "delta_exp",
    "vad_alpha",
    "fade_alpha",
    "fade_out_keys",
)
BLINK_GAP_MIN, BLINK_GAP_MAX = 60, 100  # random frames between scripted blinks
ONLINE_BLINK_FRAMES = 3000  # Ditto's schedule length when the clip length is unknown


def bin66_to_degree(pred: np.ndarray) -> np.ndarray:
    """(B, 66) bin logits -> (B,) degrees (softmax expectation, 3-degree bins); anything else passes."""
    pred = np.asarray(pred)
    if pred.ndim > 1 and pred.shape[1] == 66:
        e = np.exp(pred - np.amax(pred, axis=1, keepdims=True))
        p = e / np.sum(e, axis=1, keepdims=True)
        return np.sum(p * np.arange(66).astype(np.float32), axis=1) * 3 - 97.5
    return pred


def rotation_matrix(pitch: np.ndarray, yaw: np.ndarray, roll: np.ndarray) -> np.ndarray:
    """(B,) degrees -> (B, 3, 3) matrices M with keypoints rotating as kp @ M (= (Rz Ry Rx)^T)."""
    x, y, z = (np.asarray(a, np.float32).reshape(-1, 1) / 180 * np.pi for a in (pitch, yaw, roll))
    bs = x.shape[0]
    ones, zeros = np.ones((bs, 1), np.float32), np.zeros((bs, 1), np.float32)
    rot_x = np.concatenate([ones, zeros, zeros, zeros, np.cos(x), -np.sin(x), zeros, np.sin(x), np.cos(x)], 1)
    rot_y = np.concatenate([np.cos(y), zeros, np.sin(y), zeros, ones, zeros, -np.sin(y), zeros, np.cos(y)], 1)
    rot_z = np.concatenate([np.cos(z), -np.sin(z), zeros, np.sin(z), np.cos(z), zeros, zeros, zeros, ones], 1)
    rot = rot_z.reshape(bs, 3, 3) @ rot_y.reshape(bs, 3, 3) @ rot_x.reshape(bs, 3, 3)
    return np.transpose(rot, (0, 2, 1))


def transform_keypoints(info: Mapping[str, np.ndarray]) -> np.ndarray:
    """Keypoint info (kp, pose as logits or degrees, t, exp, scale) -> (B, 21, 3) implicit keypoints."""
    kp = info["kp"]
    bs = kp.shape[0]
    num_kp = kp.shape[1] // 3 if kp.ndim == 2 else kp.shape[1]
    rot = rotation_matrix(*(bin66_to_degree(info[k]) for k in POSE))
    out = kp.reshape(bs, num_kp, 3) @ rot + info["exp"].reshape(bs, num_kp, 3)
    out *= info["scale"][..., None]
    out[:, :, 0:2] += info["t"][:, None, 0:2]
    return out


def blink_schedule(frames: int, blink_frames: int, open_n: int | Sequence[int], rng: random.Random) -> list[int]:
    """Per frame, the row of `delta_eye_arr` to add (0 outside blinks: the array's first row is the
    open eye). `open_n`: -1 no blinks, 0 random gaps of 60..100 frames, n a fixed gap, a list cycled;
    no blink starts in the clip's last stretch (Ditto's `_set_eye_blink_idx`)."""
    idx = [0] * frames
    if isinstance(open_n, int):
        if open_n < 0:
            return idx
        gaps = [open_n] if open_n > 0 else []
    else:
        gaps = list(open_n)
    start = gaps[0] if gaps else rng.randint(BLINK_GAP_MIN, BLINK_GAP_MAX)
    end = gaps[-1] if gaps else rng.randint(BLINK_GAP_MIN, BLINK_GAP_MAX)
    last, cur, k = frames - max(end, blink_frames), start, 1
    while cur < last:
        idx[cur : cur + blink_frames] = range(blink_frames)
        if gaps:
            gap = gaps[k % len(gaps)]
            k += 1
        else:
            gap = rng.randint(BLINK_GAP_MIN, BLINK_GAP_MAX)
        cur += blink_frames + gap
    return idx


@dataclass(frozen=True)
class StitchOptions:
    """MotionStitch.setup's controls (Ditto's names and defaults; None = Ditto's image/video choice)."""

    use_d_keys: tuple[str, ...] | Mapping[str, float] | None = None
    relative_d: bool = True
    drive_eye: bool | None = None
    delta_eye_arr: np.ndarray | None = None  # (n, 63) blink expression offsets
    delta_eye_open_n: int | tuple[int, ...] = 0
    fade_type: str = ""  # "" (fades off), "d0", "s"
    fade_out_keys: tuple[str, ...] = ("exp",)
    overall_ctrl_info: Mapping[str, Any] = field(default_factory=dict)
    scale_ratio: float = 1.0  # a reference character's scale / the avatar's (ch_info)


def _mix(src: dict, d: dict, use_d_keys, d0: dict | None) -> dict:
    """Ditto's `_mix_s_d_info`: source + (generated - d0) (weighted), undriven keys from the source."""
    weighted = isinstance(use_d_keys, Mapping)
    if d0 is not None:
        d = {k: src[k] + (v - d0[k]) * (use_d_keys.get(k, 1) if weighted else 1) for k, v in d.items()}
    for k, v in src.items():
        if k not in d or k not in use_d_keys:
            d[k] = v
    if weighted and d0 is None:
        for k, alpha in use_d_keys.items():
            d[k] = d[k] * alpha
    return d


def _exp_masks(drive_eye: bool, scripted: bool, num_kp: int = 21) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(a1, a2, a3): exp = generated * a1 + source * a2 + blink * a3."""
    a1 = np.zeros((num_kp, 3), np.float32)
    a1[list(LIP_KP)] = 1
    a2: np.ndarray | int = 0
    if drive_eye:
        if not scripted:
            a1[list(EYE_KP)] = 1
        else:
            a2 = np.zeros((num_kp, 3), np.float32)
            a2[list(EYE_KP)] = 1
            a2 = a2.reshape(1, -1)
    a1 = a1.reshape(1, -1)
    return a1 * (1 - a2), (1 - a1) + a1 * a2, np.asarray(a2, np.float32)


def _pose_offsets(d: dict, ctrl: Mapping[str, Any]) -> dict:
    """Ditto's `ctrl_motion`: degrees + delta, then * alpha, then exp + delta_exp (only keys given)."""
    for k in POSE:
        if f"delta_{k}" in ctrl:
            d[k] = bin66_to_degree(d[k]) + ctrl[f"delta_{k}"]
    for k in POSE:
        if f"alpha_{k}" in ctrl:
            d[k] = d[k] * ctrl[f"alpha_{k}"]
    if "delta_exp" in ctrl:
        d["exp"] = d["exp"] + np.asarray(ctrl["delta_exp"]).reshape(1, -1)  # a JSON list adds in float64, as in Ditto
    return d


def _gaze(pose_s: tuple[float, float], d: dict) -> dict:
    """Ditto's `_fix_gaze`: move the eyes' expression with the head's yaw and pitch."""
    dx = (bin66_to_degree(d["yaw"]).item() - pose_s[0]) * 0.26
    dy = (bin66_to_degree(d["pitch"]).item() - pose_s[1]) * 0.28
    exp = d["exp"]
    exp[0, 33] += dx * (0.0007 if dx > 0 else 0.001)
    exp[0, 45] += dx * (0.001 if dx > 0 else 0.0007)
    exp[0, 34] += dy * -0.001
    exp[0, 46] += dy * -0.001
    return d


class MotionStitcher:
    """One session's MotionStitch state over its source frames (one for a photo)."""

    def __init__(
        self,
        sources: list[dict[str, np.ndarray]],
        d0_vector: np.ndarray | None,
        options: StitchOptions = StitchOptions(),
        rng: random.Random | None = None,
        frames: int = -1,
    ) -> None:
        self.sources = [{k: np.asarray(v, np.float32) for k, v in s.items()} for s in sources]
        self.video = len(self.sources) > 1
        self.o = options
        keys = options.use_d_keys if options.use_d_keys is not None else (VIDEO_D_KEYS if self.video else IMAGE_D_KEYS)
        if options.scale_ratio != 1:
            weights = keys if isinstance(keys, Mapping) else {k: 1.0 for k in keys}
            keys = {k: v * (options.scale_ratio if k in ("exp", *POSE) else 1) for k, v in weights.items()}
        self.use_d_keys = keys
        self.drive_eye = (not self.video) if options.drive_eye is None else options.drive_eye
        self.scripted = self.drive_eye and options.delta_eye_arr is not None
        self._a1, self._a2, self._a3 = _exp_masks(self.drive_eye, self.scripted)
        self.d0_vector = None if d0_vector is None else np.asarray(d0_vector, np.float32)  # (265,)
        self.d0 = vector_to_info(d0_vector) if options.relative_d and d0_vector is not None else None
        self._rng = rng or random.Random(0)
        self.set_frames(frames)
        first = self.sources[0]
        self._pose_s = (bin66_to_degree(first["yaw"]).item(), bin66_to_degree(first["pitch"]).item())
        self._x_s: dict[int, np.ndarray] = {}  # per source frame (Ditto recomputes a video's each frame)
        self._fade_dst = copy.deepcopy(first) if options.fade_type == "s" and not self.video else None

    def set_frames(self, frames: int) -> None:
        """The clip's length (-1: unknown, online): the blink schedule ends blink-free before it."""
        if self.scripted:
            n = ONLINE_BLINK_FRAMES if frames == -1 else frames
            self.blinks = blink_schedule(n, len(self.o.delta_eye_arr), self.o.delta_eye_open_n, self._rng)

    def controls(self, frame_ctrl: Mapping[str, Any]) -> dict[str, Any]:
        """Ditto's `_merge_kwargs`: the frame's own controls, and the session's for keys it lacks."""
        merged = dict(frame_ctrl)
        for k, v in self.o.overall_ctrl_info.items():
            merged.setdefault(k, v)
        return merged

    def driving_info(self, row: np.ndarray, frame_ctrl: Mapping[str, Any], source: int, index: int) -> dict:
        """Generated (265,) row of output frame `index` -> driving keypoint info (MotionStitch.__call__)."""
        ctrl, src = self.controls(frame_ctrl), self.sources[source]
        d = vector_to_info(row)
        d = _mix(src, d, self.use_d_keys, self.d0)
        blink = self.o.delta_eye_arr[self.blinks[index % len(self.blinks)]][None] if self.scripted else 0
        d["exp"] = d["exp"] * self._a1 + src["exp"] * self._a2 + blink * self._a3
        vad = ctrl.get("vad_alpha", 1)
        if vad < 1:
            d["exp"] = d["exp"] * vad + src["exp"] * (1 - vad)
        d = _pose_offsets(d, ctrl)
        if self.o.fade_type == "d0" and self._fade_dst is None:
            self._fade_dst = copy.deepcopy(d)
        if "fade_alpha" in ctrl and self.o.fade_type in ("d0", "s"):
            target = self._fade_dst if self._fade_dst is not None else src
            alpha = ctrl["fade_alpha"]
            for k in ctrl.get("fade_out_keys", self.o.fade_out_keys):
                if k != "kp":
                    d[k] = d[k] * alpha + target[k] * (1 - alpha)
        if self.drive_eye:
            d = _gaze(self._pose_s, d)
        return d

    def keypoints(self, row: np.ndarray, frame_ctrl: Mapping[str, Any], source: int, index: int):
        """(x_s, x_d) (1, 21, 3) of one frame, before stitching."""
        d = self.driving_info(row, frame_ctrl, source, index)
        x_s = self._x_s.get(source)
        if x_s is None:
            x_s = self._x_s[source] = transform_keypoints(self.sources[source])
        return x_s, transform_keypoints(d)
