"""Validate and convert audio sent by clients: 16 kHz mono float32 (or int16 PCM)."""

from __future__ import annotations

import numpy as np

from ditto_triton.streaming.audio import SAMPLE_RATE


class AudioInputError(ValueError):
    """Audio the session cannot use; the message names the problem."""


def to_float32(samples_f32: np.ndarray | None, samples_i16: np.ndarray | None, sample_rate: int | None) -> np.ndarray:
    """One request's audio as a 1-D float32 array in [-1, 1] at 16 kHz (empty if none was sent)."""
    if sample_rate is not None and sample_rate != SAMPLE_RATE:
        raise AudioInputError(f"audio must be {SAMPLE_RATE} Hz mono; got sample_rate={sample_rate} (resample on the client)")
    if samples_f32 is not None and samples_i16 is not None:
        raise AudioInputError("send audio either as float32 'audio' or as int16 'audio_int16', not both")
    if samples_i16 is not None:
        if samples_i16.dtype != np.int16:
            raise AudioInputError(f"'audio_int16' must be int16 PCM, got {samples_i16.dtype}")
        return samples_i16.reshape(-1).astype(np.float32) / 32768.0
    if samples_f32 is None:
        return np.zeros(0, np.float32)
    if samples_f32.dtype != np.float32:
        raise AudioInputError(f"'audio' must be float32 samples in [-1, 1], got {samples_f32.dtype}")
    samples = samples_f32.reshape(-1)
    if not np.all(np.isfinite(samples)):
        raise AudioInputError("audio contains NaN or infinite samples")
    return samples
