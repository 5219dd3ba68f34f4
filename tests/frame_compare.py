"""Comparing a session's frames with the same session run alone.

Frames are bit-identical unless Triton's dynamic batcher merged one of the session's calls with
another session's: ONNX Runtime's batched kernels round differently (<= 1e-6 relative, see
test_triton_stages). In a render call that moves a pixel by a level; in an LMDM call the rounding
carries through the remaining denoising steps and windows, so a run of frames differs by a few
levels. Either way every frame stays the same picture: within MIN_PSNR_DB of the session alone.
"""

from __future__ import annotations

import numpy as np

MIN_PSNR_DB = 40.0


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return float("inf") if mse == 0 else 10 * np.log10(255.0**2 / mse)


def assert_same_pictures(frames: list[np.ndarray], alone: list[np.ndarray]) -> None:
    assert len(frames) == len(alone)
    worst, index = min((psnr(a, b), i) for i, (a, b) in enumerate(zip(frames, alone)))
    assert worst >= MIN_PSNR_DB, f"frame {index} differs from the session alone: PSNR {worst:.1f} dB < {MIN_PSNR_DB}"
