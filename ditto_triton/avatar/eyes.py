"""Ditto's eye conditions from MediaPipe's 478 landmarks (architecture reference, section 7.3).

Ditto computes them on the landmarks of the 512 x 512 face crop, normalised by the crop size
(x / 512, y / 512, z as MediaPipe reports it); pass landmarks in that form. "L" is MediaPipe's left
eye group (indices 33/133, the eye on the image's left), "R" the other one.
"""

from __future__ import annotations

import numpy as np

# (outer corner, inner corner)
L_CORNERS = (33, 133)
R_CORNERS = (263, 362)
# (lower lid, upper lid) pairs whose distances measure openness
L_LID_PAIRS = ((145, 159), (144, 160), (153, 158))
R_LID_PAIRS = ((374, 386), (373, 387), (380, 385))
# iris centres
L_IRIS = 468
R_IRIS = 473

_EPS = 1e-8  # Ditto's guard against zero distances


def eye_features(lmk478: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Eye openness and iris offsets.

    Args:
        lmk478: (478, 3) normalised MediaPipe landmarks with refined irises.

    Returns:
        eye_open: (1, 2) float32 [L, R]; (sum of the three lid distances) / corner distance,
            3-D distances. Roughly 0.6-1.0 for open eyes, near 0 when closed.
        eye_ball: (1, 6) float32 [Lx, Rx, Ly, Ry, Lz, Rz]; per eye
            (unit(iris - eye centre) - unit(outer - inner corner)) * |iris - eye centre|,
            with the eye centre midway between the corners.
    """
    pts = np.asarray(lmk478)
    if pts.shape != (478, 3):
        raise ValueError(f"expected (478, 3) landmarks with refined irises, got {pts.shape}")
    if not np.isfinite(pts).all():
        raise ValueError("landmarks contain NaN or infinite values")
    pts = pts.astype(np.float32)[None]  # (1, 478, 3): Ditto's batch of one, in float32 as Ditto computes
    left_open, left_ball = _eye(pts, L_CORNERS, L_LID_PAIRS, L_IRIS)
    right_open, right_ball = _eye(pts, R_CORNERS, R_LID_PAIRS, R_IRIS)
    eye_open = np.stack([left_open, right_open], -1).astype(np.float32)
    # stack([L, R], axis=-1) of two (1, 3) vectors is (1, 3, 2); C-order flattening interleaves the eyes.
    eye_ball = np.stack([left_ball, right_ball], axis=-1).reshape(1, 6).astype(np.float32)
    return eye_open, eye_ball


def _dist(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (((a - b) ** 2).sum(-1)) ** 0.5


def _direction(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a - b) / (_dist(a, b)[:, None] + _EPS)


def _eye(
    pts: np.ndarray, corners: tuple[int, int], lid_pairs: tuple[tuple[int, int], ...], iris: int
) -> tuple[np.ndarray, np.ndarray]:
    """(openness (1,), iris move (1, 3)) in Ditto's order of operations."""
    outer, inner = pts[:, corners[0]], pts[:, corners[1]]
    width = _dist(outer, inner)
    h0, h1, h2 = (_dist(pts[:, a], pts[:, b]) for a, b in lid_pairs)
    openness = (h0 + h1 + h2) / (width + _EPS)
    center = (outer + inner) * 0.5
    ball = pts[:, iris]
    move = (_direction(ball, center) - _direction(outer, inner)) * _dist(ball, center)[:, None]
    return openness, move
