"""Validate and convert audio sent by clients: 16 kHz mono float32 (or int16 PCM)."""

from __future__ import annotations

import numpy as np

from ditto_triton.protocol import SAMPLE_RATE, BadRequest

DEFAULT_MAX_REQUEST_S = 60.0
# Float samples belong in [-1, 1]; a little overshoot (resamplers ring) is accepted as is, beyond
# this the caller almost certainly sent unscaled PCM.
FLOAT_PEAK_LIMIT = 2.0


class AudioInputError(BadRequest):
    """Audio the session cannot use; the message names the problem."""


def to_float32(
    samples_f32: np.ndarray | None,
    samples_i16: np.ndarray | None,
    sample_rate: int | None,
    max_samples: int = int(DEFAULT_MAX_REQUEST_S * SAMPLE_RATE),
) -> np.ndarray:
    """One request's audio as a 1-D float32 array at 16 kHz (empty if none was sent).

    The tensor is one channel: shape (N,) or (1, N). At most `max_samples` per request (a live
    session streams any length in chunks; one request of hours is refused rather than buffered)."""
    if sample_rate is not None and sample_rate != SAMPLE_RATE:
        raise AudioInputError(
            f"audio must be {SAMPLE_RATE} Hz mono; got sample_rate={sample_rate} (resample on the client)"
        )
    if samples_f32 is not None and samples_i16 is not None:
        raise AudioInputError("send audio either as float32 'audio' or as int16 'audio_int16', not both")
    name, samples = ("audio_int16", samples_i16) if samples_i16 is not None else ("audio", samples_f32)
    if samples is None:
        return np.zeros(0, np.float32)
    if samples.ndim > 2 or (samples.ndim == 2 and samples.shape[0] != 1):
        raise AudioInputError(
            f"'{name}' must be one channel of samples, shape (1, N); got shape {samples.shape} (mix stereo down to mono)"
        )
    if samples.size > max_samples:
        raise AudioInputError(
            f"one request carries at most {max_samples} samples ({max_samples / SAMPLE_RATE:g} s); got {samples.size}: "
            "stream long audio in chunks"
        )
    if name == "audio_int16":
        if samples.dtype != np.int16:
            raise AudioInputError(f"'audio_int16' must be int16 PCM, got {samples.dtype}")
        return samples.reshape(-1).astype(np.float32) / 32768.0
    if samples.dtype != np.float32:
        raise AudioInputError(f"'audio' must be float32 samples in [-1, 1], got {samples.dtype}")
    samples = samples.reshape(-1)
    if not np.all(np.isfinite(samples)):
        raise AudioInputError("audio contains NaN or infinite samples")
    peak = float(np.abs(samples).max()) if samples.size else 0.0
    if peak > FLOAT_PEAK_LIMIT:
        raise AudioInputError(
            f"float32 audio must be in [-1, 1]; got a peak of {peak:g} (int16 PCM? send it as 'audio_int16')"
        )
    return samples
