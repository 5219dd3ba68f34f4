"""One streaming session through tritonserver, timed: the unit every Triton-side benchmark repeats.

Plain blocking code on `DittoClient.stream`; it runs unchanged on OS threads (gate, suite) and on
gevent greenlets inside Locust (`locust_sessions.py` makes gRPC gevent-cooperative first).
"""

from __future__ import annotations

import time

import numpy as np

from ditto_triton.benchmarks.session_stats import MODES, SessionRecord
from ditto_triton.client import DittoClient
from ditto_triton.protocol import CHUNK_SAMPLES, SAMPLE_RATE
from ditto_triton.streaming.audio import frames_for_samples


def run_session(
    client: DittoClient,
    avatar_id: str,
    audio: np.ndarray,
    mode: str,
    *,
    chunk_samples: int = CHUNK_SAMPLES,
    options: dict | None = None,
) -> SessionRecord:
    """Stream `audio` (16 kHz mono float32) in `chunk_samples` requests and time every frame.

    mode "realtime": chunk k is sent k * chunk duration after the first, like a live source;
    mode "full": every chunk is sent at once (the audio is fully available).
    Times are counted from just before the session is opened, so the first-frame delay includes
    opening the stream. A failed session keeps its frames so far and the error text.
    """
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    record = SessionRecord(mode=mode, audio_s=audio.size / SAMPLE_RATE, expected_frames=frames_for_samples(audio.size))
    arrivals: list[float] = []
    t0 = time.perf_counter()
    try:
        for frame in client.stream(avatar_id, audio, options, chunk_samples, realtime=mode == "realtime"):
            arrivals.append(frame.received_s)
            record.pts_s.append(frame.pts_s)
    except Exception as exc:  # noqa: BLE001 - a failed session is a measurement, not a crash
        record.error = f"{type(exc).__name__}: {exc}"
    record.arrivals_s = [a - t0 for a in arrivals]
    return record
