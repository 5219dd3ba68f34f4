"""Register a source portrait: bytes -> fitted RGB, Ditto face crop, M_c2o and eye conditions.

`prepare_source` is Ditto's per-image registration up to (not including) the appearance and motion
extractors (architecture reference, section 7): decode, fit to the size cap, find the largest face,
crop 512 x 512, compute the eye features on the crop. The extractors' input is
`AvatarSource.extractor_input(size)`.

Eye landmarks: like Ditto, FaceMesh runs again on the 512 crop (the face is large and upright there),
and the mesh overlapping the mapped full-image landmarks is used. If FaceMesh finds nothing on the
crop, the full-image landmarks mapped into the crop are used instead (logged as a warning).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from dataclasses import dataclass, fields

import cv2
import numpy as np

from ditto_triton.avatar.crop import crop_face, transform_points
from ditto_triton.avatar.errors import InvalidOptionsError
from ditto_triton.avatar.eyes import eye_features
from ditto_triton.avatar.face import FaceBox, detect_face, landmarks_in_box
from ditto_triton.avatar.image_io import decode_image, fit_source

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
    """

    crop_scale: float = 2.3
    crop_vy_ratio: float = -0.125
    crop_rotate: bool = True
    max_size: int = 1920

    def __post_init__(self) -> None:
        _check_number("crop_scale", self.crop_scale, 1.0, 4.0)
        _check_number("crop_vy_ratio", self.crop_vy_ratio, -0.5, 0.5)
        if not isinstance(self.crop_rotate, bool):
            raise InvalidOptionsError(f"crop_rotate must be a bool, got {self.crop_rotate!r}")
        if isinstance(self.max_size, bool) or not isinstance(self.max_size, int):
            raise InvalidOptionsError(f"max_size must be an int, got {self.max_size!r}")
        if not 64 <= self.max_size <= 4096:
            raise InvalidOptionsError(f"max_size must be in [64, 4096], got {self.max_size}")

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
    """

    rgb: np.ndarray
    crop: np.ndarray
    M_c2o: np.ndarray
    eye_open: np.ndarray
    eye_ball: np.ndarray

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

    def extractor_input(self, size: int) -> np.ndarray:
        """(1, 3, size, size) float32 RGB in [0, 1]: the crop resized with INTER_AREA (Ditto, 7.2 step 6)."""
        if isinstance(size, bool) or not isinstance(size, int) or size < 1:
            raise ValueError(f"size must be a positive int, got {size!r}")
        resized = cv2.resize(self.crop, (size, size), interpolation=cv2.INTER_AREA)
        return np.ascontiguousarray(resized.astype(np.float32).transpose(2, 0, 1)[None] / 255.0)


def prepare_source(data: bytes, options: CropOptions = CropOptions()) -> AvatarSource:
    """Decode, fit, detect, crop and measure the eyes of an encoded portrait.

    Raises:
        ImageDecodeError, ImageTooLargeError: see `decode_image`.
        NoFaceError: no face in the image.
    """
    rgb = fit_source(decode_image(data), options.max_size)
    face = detect_face(rgb)
    crop, m_c2o = crop_face(
        rgb,
        face.px,
        dsize=CROP_SIZE,
        scale=options.crop_scale,
        vy_ratio=options.crop_vy_ratio,
        rotate=options.crop_rotate,
    )
    eye_open, eye_ball = eye_features(_crop_landmarks(crop, face.px, m_c2o))
    return AvatarSource(rgb=rgb, crop=crop, M_c2o=m_c2o, eye_open=eye_open, eye_ball=eye_ball)


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
