"""What registration computes for an avatar, per source frame, and its file (`ditto-register --out`).

Ditto's `AvatarRegistrar.register` returns, per source frame, the crop's M_c2o, the motion
extractor's x_s_info (pitch, yaw, roll, t, exp, scale, kp: before any smoothing), f_s, eye_open and
eye_ball, plus sc (frame 0's kp) and the full-resolution frames; the landmarks and the crop are kept
here too. A session smooths a video's x_s_info over time (`smooth_k`, Ditto's smo_k_s) when the
avatar becomes `AvatarFeatures`.

The file is an uncompressed `.npz` of plain arrays (loaded with `allow_pickle=False`), versioned by
`format` and `version`; a missing or unexpected key, a wrong dtype or a shape the server's profile
cannot use is an `AvatarFileError` naming it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ditto_triton.avatar.ditto_registration import DittoFaces
from ditto_triton.avatar.errors import AvatarError
from ditto_triton.avatar.source import (
    CropOptions,
    prepare_source,
    prepare_video_sources,
    registration_of,
    stack_sources,
)
from ditto_triton.face_models import REGISTRATIONS
from ditto_triton.npz_files import read_npz
from ditto_triton.profiles import Profile
from ditto_triton.streaming.avatar_features import SOURCE_SMOOTH_K, AvatarFeatures, features_from_extractors
from ditto_triton.streaming.motion_vector import MOTION_KEYS

FORMAT = "ditto-triton-avatar"
VERSION = 1
META_KEYS = ("format", "version", "profile", "registration", "smooth_k", "sc")
FRAME_KEYS = ("landmarks", "M_c2o", "crop", "source_rgb", *MOTION_KEYS, "f_s", "eye_open", "eye_ball")
_DTYPES = {"crop": np.uint8, "source_rgb": np.uint8}


class AvatarFileError(AvatarError):
    """An avatar file that is not one, of another version, or does not fit the server's profile."""


@dataclass(frozen=True, eq=False)
class RegisteredAvatar:
    frames: dict[str, np.ndarray]  # FRAME_KEYS -> one row per source frame
    sc: np.ndarray  # (3K,) frame 0's kp
    profile: str
    registration: str
    smooth_k: int = SOURCE_SMOOTH_K

    @classmethod
    def from_extractors(cls, stacked: Mapping[str, np.ndarray], outputs: Mapping[str, np.ndarray], **meta):
        """From `stack_sources`' arrays (+ `crops`, `landmarks`) and the extractors' outputs."""
        frames = {
            "landmarks": np.asarray(stacked["landmarks"], np.float32),
            "M_c2o": np.asarray(stacked["crop_to_source"], np.float32),
            "crop": np.asarray(stacked["crops"], np.uint8),
            "source_rgb": stacked["source_rgb"],
            **{k: np.asarray(outputs[k], np.float32) for k in MOTION_KEYS},
            "f_s": outputs["pred"],
            "eye_open": np.asarray(stacked["eye_open"], np.float32),
            "eye_ball": np.asarray(stacked["eye_ball"], np.float32),
        }
        return cls(frames=frames, sc=np.asarray(outputs["kp"][0], np.float32).reshape(-1), **meta)

    def features(self) -> AvatarFeatures:
        """The session's view: x_s_info smoothed over a video's frames, sc unsmoothed."""
        outputs = {"pred": self.frames["f_s"], **{k: self.frames[k] for k in MOTION_KEYS}}
        features = features_from_extractors(
            outputs,
            self.frames["eye_open"],
            self.frames["eye_ball"],
            self.frames["source_rgb"],
            self.frames["M_c2o"],
            self.smooth_k,
            landmarks=self.frames["landmarks"],
            registration=self.registration,
        )
        return features

    def save(self, path: Path) -> None:
        meta = {
            "format": np.array(FORMAT),
            "version": np.array(VERSION),
            "profile": np.array(self.profile),
            "registration": np.array(self.registration),
            "smooth_k": np.array(self.smooth_k),
            "sc": self.sc,
        }
        with open(path, "wb") as fh:
            np.savez(fh, **meta, **{k: np.asarray(v) for k, v in self.frames.items()})

    @classmethod
    def load(cls, data: bytes | Path, profile: Profile) -> RegisteredAvatar:
        """Read and check a file (its bytes or its path) against the serving profile."""
        arrays = read_npz(data, AvatarFileError, "an avatar file (an .npz written by ditto-register)")
        _check_keys(arrays)
        _check_meta(arrays, profile)
        _check_frames(arrays, profile)
        return cls(
            frames={k: arrays[k] for k in FRAME_KEYS},
            sc=arrays["sc"],
            profile=str(arrays["profile"]),
            registration=str(arrays["registration"]),
            smooth_k=int(arrays["smooth_k"]),
        )


def register_source(
    data: bytes,
    options: CropOptions,
    video: bool,
    faces: DittoFaces | None,
    profile: Profile,
    extract: Callable[[np.ndarray], dict[str, np.ndarray]],
) -> RegisteredAvatar:
    """Ditto's registration of an encoded photo (or video): every source frame found and cropped
    (with `faces` through Ditto's face models, else MediaPipe), its eyes measured, then
    `extract(crops)` -> the extractors' outputs (`pred` and the motion keys), in process or by BLS."""
    sources = prepare_video_sources(data, options, faces) if video else [prepare_source(data, options, faces)]
    stacked = stack_sources(sources, profile.appearance.image_size)
    return RegisteredAvatar.from_extractors(
        stacked,
        extract(stacked["extractor_input"]),
        profile=profile.name,
        registration=registration_of(sources),
        smooth_k=options.source_smooth_k,
    )


def _check_keys(arrays: Mapping[str, np.ndarray]) -> None:
    if "format" not in arrays or str(arrays["format"]) != FORMAT:
        raise AvatarFileError(f"not an avatar file: key 'format' must be {FORMAT!r}")
    missing = [k for k in (*META_KEYS, *FRAME_KEYS) if k not in arrays]
    unknown = sorted(set(arrays) - set(META_KEYS) - set(FRAME_KEYS))
    if missing or unknown:
        raise AvatarFileError(f"avatar file: missing key(s) {missing}, unexpected key(s) {unknown}")


def _check_meta(arrays: Mapping[str, np.ndarray], profile: Profile) -> None:
    version = arrays["version"]
    if version.shape != () or version.dtype.kind not in "iu" or int(version) != VERSION:
        raise AvatarFileError(f"avatar file version {version.tolist()}: this server reads version {VERSION}")
    if str(arrays["profile"]) != profile.name:
        raise AvatarFileError(f"avatar file made for the {arrays['profile']} profile; this server runs {profile.name}")
    if str(arrays["registration"]) not in REGISTRATIONS:
        raise AvatarFileError(f"avatar file: registration must be one of {REGISTRATIONS}")
    k = arrays["smooth_k"]
    if k.shape != () or k.dtype.kind not in "iu" or not 1 <= int(k) <= 31:
        raise AvatarFileError("avatar file: smooth_k must be an integer in [1, 31]")
    _check_array("sc", arrays["sc"], (3 * profile.motion.num_kp,), np.float32)


def _expected_frame_shapes(profile: Profile, arrays: Mapping[str, np.ndarray]) -> dict[str, tuple]:
    n = arrays["f_s"].shape[0] if arrays["f_s"].ndim else 0
    height, width = arrays["source_rgb"].shape[1:3] if arrays["source_rgb"].ndim == 4 else (-1, -1)
    points = arrays["landmarks"].shape[1] if arrays["landmarks"].ndim == 3 else -1
    bins, kp = profile.motion.num_bins, 3 * profile.motion.num_kp
    motion = {"pitch": bins, "yaw": bins, "roll": bins, "t": 3, "exp": kp, "scale": 1, "kp": kp}
    return {
        "landmarks": (n, points, 2),
        "M_c2o": (n, 3, 3),
        "crop": (n, 512, 512, 3),
        "source_rgb": (n, height, width, 3),
        **{key: (n, width_) for key, width_ in motion.items()},
        "f_s": (n, *profile.appearance.feature_shape),
        "eye_open": (n, profile.lmdm.EYE_OPEN_DIM),
        "eye_ball": (n, profile.lmdm.EYE_BALL_DIM),
    }


def _check_frames(arrays: Mapping[str, np.ndarray], profile: Profile) -> None:
    expected = _expected_frame_shapes(profile, arrays)
    if expected["f_s"][0] < 1:
        raise AvatarFileError("avatar file: 'f_s' must hold at least one source frame")
    for key, shape in expected.items():
        _check_array(key, arrays[key], shape, _DTYPES.get(key, np.float32))


def _check_array(key: str, array: np.ndarray, shape: tuple, dtype) -> None:
    if array.dtype != dtype or array.shape != shape or -1 in shape:
        raise AvatarFileError(
            f"avatar file: key {key!r} is {array.shape} {array.dtype}; expected {shape} {np.dtype(dtype)}"
        )
