"""Ditto's face crop (architecture reference, section 7.2 step 4), driven by MediaPipe mesh landmarks.

Geometry (LivePortrait's `parse_rect_from_landmark` semantics, vx offset always 0 as in Ditto):
two anchors, the centre of the two eyes and the centre of the lips, define the "down" axis uy
(eyes -> lips) and ux perpendicular to it (ux = (uy_y, -uy_x), pointing to the image right for an
upright face). The landmarks are expressed in that frame, their bounding box is made square (its
larger side), multiplied by `scale`, and its centre moved by `vy_ratio * size` along uy (negative =
toward the forehead). The crop is the similarity transform that maps that square onto dsize x dsize,
de-rolled so uy points straight down (unless `rotate` is False), sampled with INTER_LINEAR and a
black border.

Mesh indices (MediaPipe FaceMesh topology; "A" is the eye on the image's left, the subject's right):
- eye A centre = mean of 33 (outer corner), 133 (inner corner), 159 (upper lid, middle),
  145 (lower lid, middle); eye B centre = mean of 263, 362, 386, 374 (same roles). These mirror the
  corner + mid-lid points Ditto averages from its 106/203-point models.
- lip centre = mean of the mouth corners 61 and 291 (Ditto uses the two mouth corners too).
- bounding box over `BOX_INDICES`: Ditto boxes its 203 points, which run from the brows to the chin
  along the jaw line and do not cover the forehead. The mesh's face oval does reach the hairline, so
  the box uses the oval only from temple to temple below the brows, plus brows, eyes, irises, nose and
  lips. (Boxing all 478 points makes the face about 8 % smaller in the crop on the sample portrait.)
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

EYE_A_INDICES: tuple[int, ...] = (33, 133, 159, 145)
EYE_B_INDICES: tuple[int, ...] = (263, 362, 386, 374)
LIP_INDICES: tuple[int, ...] = (61, 291)

# Face oval from the right temple, down the jaw and chin, up to the left temple (brow height and below).
_JAW_LINE = (
    389,
    356,
    454,
    323,
    361,
    288,
    397,
    365,
    379,
    378,
    400,
    377,
    152,
    148,
    176,
    149,
    150,
    136,
    172,
    58,
    132,
    93,
    234,
    127,
    162,
)
_BROWS = (46, 52, 53, 55, 63, 65, 66, 70, 105, 107, 276, 282, 283, 285, 293, 295, 296, 300, 334, 336)
_EYES = (
    7,
    33,
    133,
    144,
    145,
    153,
    154,
    155,
    157,
    158,
    159,
    160,
    161,
    163,
    173,
    246,
    249,
    263,
    362,
    373,
    374,
    380,
    381,
    382,
    384,
    385,
    386,
    387,
    388,
    390,
    398,
    466,
)
_NOSE = (1, 2, 4, 5, 6, 19, 45, 48, 64, 94, 97, 98, 115, 168, 195, 197, 220, 275, 278, 294, 326, 327, 344, 440)
_LIPS = (
    0,
    13,
    14,
    17,
    37,
    39,
    40,
    61,
    78,
    80,
    81,
    82,
    84,
    87,
    88,
    91,
    95,
    146,
    178,
    181,
    185,
    191,
    267,
    269,
    270,
    291,
    308,
    310,
    311,
    312,
    314,
    317,
    318,
    321,
    324,
    375,
    402,
    405,
    409,
    415,
)
BOX_INDICES: tuple[int, ...] = tuple(sorted(set(_JAW_LINE + _BROWS + _EYES + _NOSE + _LIPS)))

MIN_LANDMARKS = 468  # the crop needs the mesh points only, not the 10 iris points


@dataclass(frozen=True)
class CropRect:
    """A rotated square in original-image pixels.

    Attributes:
        center: (x, y) of the square's centre.
        size: side length in pixels.
        ux, uy: unit axes of the square (image right and down for an upright face).
    """

    center: tuple[float, float]
    size: float
    ux: tuple[float, float]
    uy: tuple[float, float]

    @property
    def roll(self) -> float:
        """Angle of ux from the image x axis in radians (clockwise positive, image coordinates)."""
        return float(np.arctan2(self.ux[1], self.ux[0]))


def anchor_points(lmk_px: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(eye centre, lip centre) as (2,) float64 pixel points from (N>=468, >=2) mesh landmarks."""
    pts = _points(lmk_px)
    eye = (pts[list(EYE_A_INDICES)].mean(axis=0) + pts[list(EYE_B_INDICES)].mean(axis=0)) / 2
    lip = pts[list(LIP_INDICES)].mean(axis=0)
    return eye, lip


def crop_rect(lmk_px: np.ndarray, *, scale: float = 2.3, vy_ratio: float = -0.125) -> CropRect:
    """The crop square for (N>=468, >=2) mesh landmarks in pixels (see the module docstring)."""
    pts = _points(lmk_px)
    eye, lip = anchor_points(pts)
    down = lip - eye
    length = float(np.hypot(*down))
    uy = down / length if length > 1e-3 else np.array([0.0, 1.0])
    ux = np.array([uy[1], -uy[0]])
    frame = np.stack([ux, uy])  # rows: the crop's axes in image coordinates

    box = pts[list(BOX_INDICES)]
    origin = box.mean(axis=0)
    local = (box - origin) @ frame.T
    lo, hi = local.min(axis=0), local.max(axis=0)
    size = float((hi - lo).max()) * scale
    mid = (lo + hi) / 2
    center = origin + ux * mid[0] + uy * mid[1] + uy * (vy_ratio * size)
    return CropRect(
        center=(float(center[0]), float(center[1])),
        size=size,
        ux=(float(ux[0]), float(ux[1])),
        uy=(float(uy[0]), float(uy[1])),
    )


def crop_matrix(rect: CropRect, dsize: int, *, rotate: bool = True) -> np.ndarray:
    """(3, 3) float64 M_o2c: original pixel coords -> crop pixel coords (homogeneous).

    The square's centre goes to (dsize/2, dsize/2) (Ditto's convention), its side to dsize.
    """
    if rect.size <= 0:
        raise ValueError(f"crop size must be positive, got {rect.size}")
    s = dsize / rect.size
    axes = np.array([rect.ux, rect.uy]) if rotate else np.eye(2)
    linear = s * axes
    m = np.eye(3)
    m[:2, :2] = linear
    m[:2, 2] = np.array([dsize / 2, dsize / 2]) - linear @ np.array(rect.center)
    return m


def crop_face(
    rgb: np.ndarray,
    lmk_px: np.ndarray,
    *,
    dsize: int = 512,
    scale: float = 2.3,
    vy_ratio: float = -0.125,
    rotate: bool = True,
) -> tuple[np.ndarray, np.ndarray]:
    """Crop the face like Ditto.

    Args:
        rgb: (H, W, 3) uint8 source image.
        lmk_px: (N>=468, 2 or 3) MediaPipe mesh landmarks in pixels of `rgb` (z is ignored).
        dsize: side of the square crop in pixels.
        scale: crop side / side of the square landmark box.
        vy_ratio: centre shift along the eye->lip axis as a fraction of the crop side
            (negative = toward the forehead).
        rotate: de-roll the crop so the eye->lip axis is vertical.

    Returns:
        crop (dsize, dsize, 3) uint8, and M_c2o (3, 3) float32 mapping crop pixel coords to original
        pixel coords.
    """
    if not isinstance(rgb, np.ndarray) or rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
        raise ValueError("expected an (H, W, 3) uint8 image")
    if isinstance(dsize, bool) or not isinstance(dsize, int) or dsize < 8:
        raise ValueError(f"dsize must be an int >= 8, got {dsize!r}")
    if not scale > 0:
        raise ValueError(f"scale must be positive, got {scale!r}")
    m_o2c = crop_matrix(crop_rect(lmk_px, scale=scale, vy_ratio=vy_ratio), dsize, rotate=rotate)
    crop = cv2.warpAffine(
        rgb,
        m_o2c[:2].astype(np.float64),
        (dsize, dsize),
        flags=cv2.INTER_LINEAR,
        borderMode=cv2.BORDER_CONSTANT,
        borderValue=(0, 0, 0),
    )
    return crop, np.linalg.inv(m_o2c).astype(np.float32)


def transform_points(points: np.ndarray, m: np.ndarray) -> np.ndarray:
    """Apply a (3, 3) or (2, 3) affine matrix to (N, 2) points; returns (N, 2) float64."""
    pts = np.asarray(points, dtype=np.float64)[:, :2]
    m = np.asarray(m, dtype=np.float64)
    return pts @ m[:2, :2].T + m[:2, 2]


def _points(lmk_px: np.ndarray) -> np.ndarray:
    pts = np.asarray(lmk_px, dtype=np.float64)
    if pts.ndim != 2 or pts.shape[0] < MIN_LANDMARKS or pts.shape[1] < 2:
        raise ValueError(f"expected MediaPipe mesh landmarks of shape (N>={MIN_LANDMARKS}, 2 or 3), got {pts.shape}")
    pts = pts[:, :2]
    if not np.isfinite(pts).all():
        raise ValueError("landmarks contain NaN or infinite values")
    return pts
