"""Register a source portrait or video: bytes -> fitted RGB, Ditto face crop, M_c2o and eye conditions
(one `AvatarSource` per source frame).

`prepare_source` is Ditto's per-image registration up to (not including) the appearance and motion
extractors (architecture reference, section 7): decode, fit to the size cap, find the largest face,
crop 512 x 512, compute the eye features on the crop. The extractors' input is
`AvatarSource.extractor_input(size)`.

Two ways to find the face, recorded in every source as `registration`:
- "ditto" (`faces` given: Ditto's released face models, `ditto_registration.py`): Ditto's own path.
- "mediapipe" (no `faces`: synthetic weights, nothing released to run): this project's stand-in.
  MediaPipe's legacy FaceMesh finds the face and crops from mesh points (`crop.py`); like Ditto,
  FaceMesh runs again on the 512 crop for the eye landmarks, and the mesh overlapping the mapped
  full-image landmarks is used (if it finds nothing there, the mapped landmarks, with a warning).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from dataclasses import dataclass, fields

import cv2
import numpy as np

from ditto_triton.avatar.crop import crop_face, transform_points
from ditto_triton.avatar.ditto_registration import DittoFaces
from ditto_triton.avatar.errors import InvalidOptionsError, NoFaceError
from ditto_triton.avatar.eyes import eye_features
from ditto_triton.avatar.face import FaceBox, detect_face, landmarks_in_box
from ditto_triton.avatar.image_io import decode_image, fit_source
from ditto_triton.avatar.storage import frame_array
from ditto_triton.avatar.video import MAX_VIDEO_FRAMES, decode_video
from ditto_triton.face_models import REGISTRATION_DITTO, REGISTRATION_MEDIAPIPE

logger = logging.getLogger(__name__)

CROP_SIZE = 512


def _check_number(name: str, value: object, low: float, high: float) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise InvalidOptionsError(f"{name} must be a number, got {value!r}")
    if not math.isfinite(value) or not low <= value <= high:
        raise InvalidOptionsError(f"{name} must be in [{low}, {high}], got {value!r}")


@dataclass(frozen=True)
class CropOptions:
    """Ditto's registration controls (architecture reference, section 8.1).

    Attributes:
        crop_scale: crop side / landmark box side, in [1.0, 4.0] (Ditto: 2.3).
        crop_vy_ratio: centre shift along the eye->lip axis as a fraction of the crop side, in
            [-0.5, 0.5]; negative moves the crop toward the forehead (Ditto: -0.125).
        crop_rotate: de-roll the crop (Ditto's `crop_flag_do_rot`).
        max_size: long-side cap of the source image in pixels, in [64, 4096] (Ditto: 1920).
        max_frames: a video's frames registered from its start; 0 (the default) registers them
            all, as Ditto does (its template_n_frames -1). Per-frame arrays of a long clip live in
            temporary files, memory-mapped (f_s is 8 MiB per frame at full size).
        source_smooth_k: width of the temporal mean filter over a video's motion-extractor
            outputs, in [1, 31] (Ditto's smo_k_s: 13).
    """

    crop_scale: float = 2.3
    crop_vy_ratio: float = -0.125
    crop_rotate: bool = True
    max_size: int = 1920
    max_frames: int = 0
    source_smooth_k: int = 13

    def __post_init__(self) -> None:
        _check_number("crop_scale", self.crop_scale, 1.0, 4.0)
        _check_number("crop_vy_ratio", self.crop_vy_ratio, -0.5, 0.5)
        if not isinstance(self.crop_rotate, bool):
            raise InvalidOptionsError(f"crop_rotate must be a bool, got {self.crop_rotate!r}")
        if isinstance(self.max_size, bool) or not isinstance(self.max_size, int):
            raise InvalidOptionsError(f"max_size must be an int, got {self.max_size!r}")
        if not 64 <= self.max_size <= 4096:
            raise InvalidOptionsError(f"max_size must be in [64, 4096], got {self.max_size}")
        for name, (low, high) in {"max_frames": (0, MAX_VIDEO_FRAMES), "source_smooth_k": (1, 31)}.items():
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
                raise InvalidOptionsError(f"{name} must be an int in [{low}, {high}], got {value!r}")

    @classmethod
    def from_dict(cls, values: Mapping[str, object]) -> CropOptions:
        """Options from a request's key/value map; missing keys keep their defaults.

        Raises:
            InvalidOptionsError: an unknown key, a wrong type or an out-of-range value.
        """
        if not isinstance(values, Mapping):
            raise InvalidOptionsError(f"crop options must be a mapping, got {type(values).__name__}")
        known = [f.name for f in fields(cls)]
        unknown = sorted(str(k) for k in values if k not in known)
        if unknown:
            raise InvalidOptionsError(
                f"unknown crop option(s) {', '.join(unknown)}; expected some of {', '.join(known)}"
            )
        return cls(**values)  # type: ignore[arg-type]  # __post_init__ checks every type


@dataclass(frozen=True, eq=False)
class AvatarSource:
    """A registered source image. Arrays are read-only.

    Attributes:
        rgb: (H, W, 3) uint8, the fitted full-resolution source (H, W even, long side <= max_size);
            the frame the rendered face is pasted back into.
        crop: (512, 512, 3) uint8 RGB Ditto face crop.
        M_c2o: (3, 3) float32, crop pixel coords -> `rgb` pixel coords (homogeneous).
        eye_open: (1, 2) float32 [L, R] eye openness.
        eye_ball: (1, 6) float32 [Lx, Rx, Ly, Ry, Lz, Rz] iris offsets.
        landmarks: (N, 2) float32 image points the crop was made from: Ditto's 203 points, or
            MediaPipe's 478 on the "mediapipe" path.
        registration: "ditto" or "mediapipe" (see the module docstring).
    """

    rgb: np.ndarray
    crop: np.ndarray
    M_c2o: np.ndarray
    eye_open: np.ndarray
    eye_ball: np.ndarray
    landmarks: np.ndarray
    registration: str

    def __post_init__(self) -> None:
        h, w = self.rgb.shape[:2] if self.rgb.ndim == 3 else (0, 0)
        expected = {
            "rgb": ((h, w, 3), np.uint8),
            "crop": ((CROP_SIZE, CROP_SIZE, 3), np.uint8),
            "M_c2o": ((3, 3), np.float32),
            "eye_open": ((1, 2), np.float32),
            "eye_ball": ((1, 6), np.float32),
        }
        for name, (shape, dtype) in expected.items():
            arr = getattr(self, name)
            if not isinstance(arr, np.ndarray) or arr.shape != shape or arr.dtype != dtype:
                got = f"{arr.shape} {arr.dtype}" if isinstance(arr, np.ndarray) else type(arr).__name__
                raise ValueError(f"AvatarSource.{name} must be {shape} {np.dtype(dtype)}, got {got}")
            arr.setflags(write=False)
        if self.registration not in (REGISTRATION_DITTO, REGISTRATION_MEDIAPIPE):
            raise ValueError(f"AvatarSource.registration must be 'ditto' or 'mediapipe', got {self.registration!r}")

    def extractor_input(self, size: int) -> np.ndarray:
        """(1, 3, size, size) float32 RGB in [0, 1]: the crop resized with INTER_AREA (Ditto, 7.2 step 6)."""
        if isinstance(size, bool) or not isinstance(size, int) or size < 1:
            raise ValueError(f"size must be a positive int, got {size!r}")
        resized = cv2.resize(self.crop, (size, size), interpolation=cv2.INTER_AREA)
        return np.ascontiguousarray(resized.astype(np.float32).transpose(2, 0, 1)[None] / 255.0)


def prepare_source(data: bytes, options: CropOptions = CropOptions(), faces: DittoFaces | None = None) -> AvatarSource:
    """Decode, fit, detect, crop and measure the eyes of an encoded portrait; with `faces`, as Ditto.

    Raises:
        ImageDecodeError, ImageTooLargeError: see `decode_image`.
        NoFaceError: no face in the image.
    """
    rgb = fit_source(decode_image(data), options.max_size)
    if faces is not None:
        return _ditto_source(rgb, faces.register_frame(rgb, None, *_crop_args(options)))
    return _source_from_face(rgb, detect_face(rgb).px, options)


def prepare_video_sources(
    data: bytes, options: CropOptions = CropOptions(), faces: DittoFaces | None = None
) -> list[AvatarSource]:
    """Decode a source video and crop every frame (the first `options.max_frames` if set), as Ditto
    does: the face is detected in frame 0 and then followed from each frame's landmarks to the next.
    With `faces` that is Ditto's tracking (the previous frame's 203 points seed the next crop);
    without, FaceMesh in the previous face's box, a fresh detection when that fails, the previous
    landmarks when the face is lost for a frame.

    Raises:
        VideoDecodeError, ImageTooLargeError: see `decode_video`.
        NoFaceError: no face in the first frame.
    """
    frames = decode_video(data, options.max_frames or MAX_VIDEO_FRAMES, options.max_size)
    if faces is not None:
        return _ditto_video(frames, faces, options)
    try:
        landmarks = detect_face(frames[0]).px
    except NoFaceError:
        raise NoFaceError("no face was found in the video's first frame") from None
    sources = []
    for index, rgb in enumerate(frames):
        if index:
            landmarks = _track(rgb, landmarks, index)
        sources.append(_source_from_face(rgb, landmarks, options))
    return sources


def _crop_args(options: CropOptions) -> tuple[float, float, bool]:
    return options.crop_scale, options.crop_vy_ratio, options.crop_rotate


def _ditto_video(frames: list[np.ndarray], faces: DittoFaces, options: CropOptions) -> list[AvatarSource]:
    sources, previous = [], None
    for index, rgb in enumerate(frames):
        try:
            frame = faces.register_frame(rgb, previous, *_crop_args(options))
        except NoFaceError as exc:
            raise NoFaceError(f"video frame {index}: {exc}") from None
        previous = frame.landmarks
        sources.append(_ditto_source(rgb, frame))
    return sources


def _ditto_source(rgb: np.ndarray, frame) -> AvatarSource:
    return AvatarSource(
        rgb=rgb,
        crop=frame.crop,
        M_c2o=np.asarray(frame.M_c2o, np.float32),
        eye_open=frame.eye_open,
        eye_ball=frame.eye_ball,
        landmarks=np.asarray(frame.landmarks, np.float32),
        registration=REGISTRATION_DITTO,
    )


def _track(rgb: np.ndarray, previous: np.ndarray, index: int) -> np.ndarray:
    found = landmarks_in_box(rgb, FaceBox.around(previous))
    if found is not None:
        return found.px
    try:
        return detect_face(rgb).px
    except NoFaceError:
        logger.warning("video frame %d: face lost, keeping the previous frame's landmarks", index)
        return previous


def _source_from_face(rgb: np.ndarray, face_px: np.ndarray, options: CropOptions) -> AvatarSource:
    crop, m_c2o = crop_face(
        rgb,
        face_px,
        dsize=CROP_SIZE,
        scale=options.crop_scale,
        vy_ratio=options.crop_vy_ratio,
        rotate=options.crop_rotate,
    )
    eye_open, eye_ball = eye_features(_crop_landmarks(crop, face_px, m_c2o))
    return AvatarSource(
        rgb=rgb,
        crop=crop,
        M_c2o=m_c2o,
        eye_open=eye_open,
        eye_ball=eye_ball,
        landmarks=np.ascontiguousarray(face_px[:, :2], np.float32),
        registration=REGISTRATION_MEDIAPIPE,
    )


def _crop_landmarks(crop: np.ndarray, lmk_px: np.ndarray, m_c2o: np.ndarray) -> np.ndarray:
    """(478, 3) landmarks of the face in the crop, normalised by the crop size (see module docstring)."""
    m_o2c = np.linalg.inv(m_c2o.astype(np.float64))
    mapped = transform_points(lmk_px, m_o2c)
    on_crop = landmarks_in_box(crop, FaceBox.around(mapped))
    if on_crop is not None:
        return on_crop.normalised
    logger.warning("FaceMesh found no face on the crop; using the source landmarks mapped into it")
    scale = math.sqrt(abs(np.linalg.det(m_o2c[:2, :2])))
    z = lmk_px[:, 2:3].astype(np.float64) * scale
    return np.concatenate([mapped, z], axis=1) / CROP_SIZE


def stack_sources(sources: list[AvatarSource], extractor_size: int) -> dict[str, np.ndarray]:
    """The per-frame arrays of registered source frames, one row each (`extract_features`' inputs).
    The full-resolution frames of a long video go to a memory-mapped temporary file."""
    source_rgb = frame_array((len(sources), *sources[0].rgb.shape), np.uint8)
    for i, s in enumerate(sources):
        source_rgb[i] = s.rgb
    return {
        "extractor_input": np.concatenate([s.extractor_input(extractor_size) for s in sources]),
        "eye_open": np.concatenate([s.eye_open for s in sources]),
        "eye_ball": np.concatenate([s.eye_ball for s in sources]),
        "source_rgb": source_rgb,
        "crop_to_source": np.stack([s.M_c2o for s in sources]),
        "crops": np.stack([s.crop for s in sources]),
        "landmarks": np.stack([s.landmarks for s in sources]),
    }


def registration_of(sources: list[AvatarSource]) -> str:
    """The one registration path the sources went through."""
    paths = {s.registration for s in sources}
    if len(paths) != 1:
        raise ValueError(f"source frames registered by different paths: {sorted(paths)}")
    return paths.pop()
