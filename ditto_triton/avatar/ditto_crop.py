"""Ditto's crop from 106 or 203 landmarks (reference §7.2, aux-models §4), in Ditto's float32 arithmetic.

Two anchors, the centre of the two eyes and the lip centre, give the "down" axis uy and ux
perpendicular to it; all landmarks are expressed in that frame, their box made square, scaled, and
its centre moved by `vy_ratio * size` along uy (Ditto accepts a vx ratio but never forwards it, so
there is none here). M_o2c maps that square onto dsize x dsize, de-rolled unless `rotate` is off.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

_F32 = np.float32


@dataclass(frozen=True)
class AnchorIndices:
    """Which landmarks make the two eye centres and the lip centre."""

    left_eye: tuple[int, ...]
    right_eye: tuple[int, ...]
    lip: tuple[int, ...]


ANCHORS = {
    106: AnchorIndices((33, 35, 40, 39), (87, 89, 94, 93), (52, 61)),
    203: AnchorIndices((0, 6, 12, 18), (24, 30, 36, 42), (48, 66)),
}


@dataclass(frozen=True, eq=False)
class DittoCrop:
    """A crop and its matrices: M_o2c original -> crop, M_c2o crop -> original, both (3, 3) float32."""

    image: np.ndarray
    M_o2c: np.ndarray
    M_c2o: np.ndarray


def crop_rect(pts: np.ndarray, scale: float, vy_ratio: float) -> tuple[np.ndarray, np.float32, float]:
    """(centre (2,) float32, side (float32), angle of ux in radians) of the crop square for (106|203, 2)
    points. Every step is float32, as in Ditto (NumPy 2 promotion)."""
    pts = _check_points(pts)
    anchors = ANCHORS[pts.shape[0]]
    eye = (pts[list(anchors.left_eye)].mean(axis=0) + pts[list(anchors.right_eye)].mean(axis=0)) / 2
    lip = pts[list(anchors.lip)].mean(axis=0)
    uy = lip - eye
    length = np.linalg.norm(uy)
    uy = np.array([0, 1], _F32) if length <= 1e-3 else uy / length
    ux = np.array((uy[1], -uy[0]), _F32)
    angle = math.acos(ux[0])
    if ux[1] < 0:
        angle = -angle
    centre0 = pts.mean(axis=0)
    local = (pts - centre0) @ np.array([ux, uy]).T
    low, high = local.min(axis=0), local.max(axis=0)
    mid = (low + high) / 2
    size = (high - low).max() * _F32(scale)
    centre = centre0 + ux * mid[0] + uy * mid[1] + uy * (_F32(vy_ratio) * size)
    return centre.astype(_F32), size, angle


def crop_matrix(centre: np.ndarray, size: np.float32, angle: float, dsize: int, rotate: bool) -> np.ndarray:
    """(3, 3) float32 M_o2c: the square of `size` at `centre` onto dsize x dsize, rotated by -angle
    (float32 arithmetic throughout, as Ditto's)."""
    s = _F32(dsize) / _F32(size)
    cx, cy = _F32(centre[0]), _F32(centre[1])
    half = _F32(dsize / 2)
    if rotate:
        c, n = _F32(math.cos(angle)), _F32(math.sin(angle))
        rows = [[s * c, s * n, half - s * (c * cx + n * cy)], [-s * n, s * c, half - s * (-n * cx + c * cy)]]
    else:
        rows = [[s, 0, half - s * cx], [0, s, half - s * cy]]
    return np.vstack([np.array(rows, _F32), np.array([0, 0, 1], _F32)])


def crop_image(
    rgb: np.ndarray, pts: np.ndarray, dsize: int, scale: float, vy_ratio: float, rotate: bool = True
) -> DittoCrop:
    """Ditto's `crop_image`: the warped crop (INTER_LINEAR, black border) and its matrices."""
    m_o2c = crop_matrix(*crop_rect(pts, scale, vy_ratio), dsize, rotate)
    image = cv2.warpAffine(rgb, m_o2c[:2], (dsize, dsize), flags=cv2.INTER_LINEAR)
    return DittoCrop(image, m_o2c, np.linalg.inv(m_o2c))


def transform_points(pts: np.ndarray, m: np.ndarray) -> np.ndarray:
    """(N, 2) points through the affine part of a (3, 3) or (2, 3) matrix, in the points' dtype."""
    return pts @ m[:2, :2].T + m[:2, 2]


def _check_points(pts: np.ndarray) -> np.ndarray:
    pts = np.asarray(pts)
    if pts.ndim != 2 or pts.shape[1] != 2 or pts.shape[0] not in ANCHORS:
        raise ValueError(f"expected (106, 2) or (203, 2) landmarks, got {pts.shape}")
    if not np.isfinite(pts).all():
        raise ValueError("landmarks contain NaN or infinite values")
    return pts.astype(_F32, copy=False)
