"""Ditto's moving average over frames (its `_smo`, and `smo_k_s` on a video's source motion)."""

from __future__ import annotations

import numpy as np


def moving_average(rows: np.ndarray, k: int) -> np.ndarray:
    """Centred moving average of width k along axis 0, the window clipped at both ends."""
    if k <= 1 or rows.shape[0] < 2:
        return rows
    half, n = k // 2, rows.shape[0]
    sums = np.concatenate([np.zeros((1, *rows.shape[1:]), np.float64), np.cumsum(rows, axis=0, dtype=np.float64)])
    lo, hi = np.maximum(np.arange(n) - half, 0), np.minimum(np.arange(n) + half + 1, n)
    return ((sums[hi] - sums[lo]) / (hi - lo).reshape(-1, *[1] * (rows.ndim - 1))).astype(rows.dtype)
