"""Read any audio file soundfile can open and bring it to 16 kHz mono float32."""

from __future__ import annotations

from math import gcd
from pathlib import Path

import numpy as np
import soundfile as sf
from scipy.signal import resample_poly

from ditto_triton.protocol import SAMPLE_RATE


def to_16k_mono(samples: np.ndarray, rate: int) -> np.ndarray:
    samples = np.asarray(samples, np.float32)
    if samples.ndim == 2:
        samples = samples.mean(axis=1)
    if rate != SAMPLE_RATE:
        g = gcd(SAMPLE_RATE, int(rate))
        samples = resample_poly(samples, SAMPLE_RATE // g, int(rate) // g)
    return np.ascontiguousarray(samples, np.float32)


def load_audio(path: str | Path) -> np.ndarray:
    """(N,) float32 in [-1, 1] at 16 kHz; stereo is averaged to mono."""
    try:
        samples, rate = sf.read(str(path), dtype="float32", always_2d=False)
    except (sf.LibsndfileError, RuntimeError) as exc:
        raise ValueError(f"{path}: cannot read audio ({exc})") from None
    if not np.asarray(samples).size:
        raise ValueError(f"{path}: the file holds no audio samples; nothing to render")
    return to_16k_mono(samples, rate)
