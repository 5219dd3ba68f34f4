"""The WebSocket protocol between the page and the gateway, one session per socket.

Page -> gateway: binary messages are int16 little-endian PCM, 16 kHz mono, any length; the text
message {"type": "end"} finishes the audio (the remaining frames still come).
Gateway -> page: binary messages are one frame each, FRAME_HEADER (frame index uint32, pts float64,
little-endian) followed by the JPEG; text messages are JSON events: {"type": "ready"},
{"type": "done", "frames": n} and {"type": "error", "message": ...}.
"""

from __future__ import annotations

import struct

import numpy as np

from ditto_triton.protocol import SAMPLE_RATE

FRAME_HEADER = struct.Struct("<Id")
MAX_AUDIO_MESSAGE_BYTES = SAMPLE_RATE * 2 * 10  # 10 s of audio in one message


class ProtocolError(ValueError):
    """A message from the page that the gateway cannot use."""


def pack_frame(index: int, pts_s: float, jpeg: bytes) -> bytes:
    return FRAME_HEADER.pack(index, pts_s) + jpeg


def unpack_frame(message: bytes) -> tuple[int, float, bytes]:
    index, pts = FRAME_HEADER.unpack_from(message)
    return index, pts, message[FRAME_HEADER.size :]


def pcm_from_message(message: bytes) -> np.ndarray:
    """int16 PCM samples of one binary message."""
    if len(message) % 2:
        raise ProtocolError(f"audio messages are int16 PCM: {len(message)} bytes is not a whole number of samples")
    if len(message) > MAX_AUDIO_MESSAGE_BYTES:
        raise ProtocolError(
            f"audio message of {len(message)} bytes; send at most {MAX_AUDIO_MESSAGE_BYTES} (10 s) at a time"
        )
    return np.frombuffer(message, "<i2").astype(np.int16)


def ready_event() -> dict[str, str]:
    """The session is open: the page may send audio."""
    return {"type": "ready"}


def done_event(frames: int) -> dict[str, str | int]:
    """The session finished after `frames` frames."""
    return {"type": "done", "frames": frames}


def error_event(message: str) -> dict[str, str]:
    """The session failed or could not start; no event follows it."""
    return {"type": "error", "message": message}
