"""Online audio chunking for the streaming HuBERT encoder (architecture reference §3.7, §6.2).

Audio is 16 kHz mono; video is 25 frames/s, so one frame is 640 samples. The encoder sees windows of
6480 samples = (3 past + 5 current + 2 future frames) x 640 + 80, taken every 3200 samples (5 frames)
from the stream with 3 frames (1920 samples) of zeros in front. Of the 20 encoder rows per window,
rows [-14:-4] belong to the 5 current frames and are averaged in pairs -> 5 feature rows.

Offline (the whole clip known) Ditto pads 2000 zeros in front instead of 1920, so its features sit
80 samples (5 ms) earlier; `AudioChunker(OFFLINE_PAST_SAMPLES)` reproduces that.

Frame-count rule: a stream of N samples yields exactly ceil(N / 640) video frames. The tail is
zero-padded to complete the last window; frames beyond ceil(N / 640) are never emitted.
"""

from __future__ import annotations

import math

import numpy as np

from ditto_triton.protocol import SAMPLES_PER_FRAME

WINDOW_SAMPLES = 6480
HOP_SAMPLES = 3200
FRAMES_PER_WINDOW = HOP_SAMPLES // SAMPLES_PER_FRAME  # 5
PAST_SAMPLES = 3 * SAMPLES_PER_FRAME  # 1920: online feeder's zero prefix
OFFLINE_PAST_SAMPLES = WINDOW_SAMPLES - 7 * SAMPLES_PER_FRAME  # 2000: Ditto's offline wav2feat prefix


def frames_for_samples(n_samples: int) -> int:
    """Number of video frames a stream of `n_samples` audio samples produces."""
    return math.ceil(n_samples / SAMPLES_PER_FRAME)


def features_from_encoding(encoding: np.ndarray) -> np.ndarray:
    """(20, H) encoder rows of one window -> (5, H) features of its 5 current frames."""
    if encoding.ndim != 2 or encoding.shape[0] < 14:
        raise ValueError(f"encoder output must be (20, H), got {encoding.shape}")
    rows = encoding[-14:-4]
    return rows.reshape(FRAMES_PER_WINDOW, 2, rows.shape[1]).mean(axis=1, dtype=np.float32)


class AudioChunker:
    """Turns audio chunks of any length into encoder windows, in order, exactly once each."""

    def __init__(self, past_samples: int = PAST_SAMPLES) -> None:
        self._buffer = np.zeros(past_samples, dtype=np.float32)
        self.total_samples = 0
        self.windows_emitted = 0

    def push(self, samples: np.ndarray) -> list[np.ndarray]:
        """Append samples; return every (6480,) window that is now complete."""
        samples = np.asarray(samples, dtype=np.float32).reshape(-1)
        self.total_samples += samples.size
        self._buffer = np.concatenate([self._buffer, samples])
        return self._drain()

    def flush(self) -> list[np.ndarray]:
        """End of stream: zero-pad and return the windows still needed to cover every frame."""
        needed = math.ceil(frames_for_samples(self.total_samples) / FRAMES_PER_WINDOW)
        out = []
        while self.windows_emitted < needed:
            if self._buffer.size < WINDOW_SAMPLES:
                pad = np.zeros(WINDOW_SAMPLES - self._buffer.size, dtype=np.float32)
                self._buffer = np.concatenate([self._buffer, pad])
            out.extend(self._drain())
        return out

    def _drain(self) -> list[np.ndarray]:
        out = []
        while self._buffer.size >= WINDOW_SAMPLES:
            out.append(self._buffer[:WINDOW_SAMPLES].copy())
            self._buffer = self._buffer[HOP_SAMPLES:]
            self.windows_emitted += 1
        return out
