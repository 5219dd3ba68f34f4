"""Decode an uploaded source video safely (reference §7.1, §7.5): PyAV, bounded bytes, pixels and frames.

Only three demuxers ever see the untrusted bytes, chosen from the file's signature: ISO-BMFF
(MP4/MOV/M4V), Matroska (MKV/WebM) and AVI; anything else is refused before FFmpeg probes it.
Frames come out as Ditto loads them: RGB, fitted to the long-side cap with even dimensions
(`fit_source`), at most `max_frames` of them from the start of the clip.
"""

from __future__ import annotations

import io

import av
import numpy as np

from ditto_triton.avatar.errors import ImageTooLargeError, VideoDecodeError
from ditto_triton.avatar.image_io import DEFAULT_MAX_PIXELS, fit_source
from ditto_triton.avatar.storage import FrameBlocks

MAX_VIDEO_BYTES = 100_000_000
MAX_VIDEO_FRAMES = 7500  # 5 minutes at 25 fps; the byte and pixel limits usually bind first
_ISO_BOXES = (b"ftyp", b"moov", b"mdat", b"free", b"wide", b"skip")


def container_format(data: bytes) -> str | None:
    """FFmpeg demuxer name for a supported video container, from its first bytes; None otherwise."""
    if len(data) >= 12 and data[4:8] in _ISO_BOXES:
        return "mov"
    if data[:4] == b"\x1a\x45\xdf\xa3":
        return "matroska"
    if data[:4] == b"RIFF" and data[8:12] == b"AVI ":
        return "avi"
    return None


def decode_video(
    data: bytes,
    max_frames: int,
    max_size: int,
    *,
    max_bytes: int = MAX_VIDEO_BYTES,
    max_pixels: int = DEFAULT_MAX_PIXELS,
) -> list[np.ndarray]:
    """The first `max_frames` frames of an encoded video (MP4, MOV, WebM, MKV, AVI ...) as
    (H, W, 3) uint8 RGB arrays of one size.

    Raises:
        VideoDecodeError: empty or undecodable data, no video stream, no frames.
        ImageTooLargeError: more than `max_bytes` bytes, or frames of more than `max_pixels` pixels.
    """
    if not data:
        raise VideoDecodeError("video data is empty")
    if len(data) > max_bytes:
        raise ImageTooLargeError(f"video is {len(data)} bytes; the limit is {max_bytes}")
    if not 1 <= max_frames <= MAX_VIDEO_FRAMES:
        raise ValueError(f"max_frames must be in 1..{MAX_VIDEO_FRAMES}, got {max_frames}")
    fmt = container_format(data)
    if fmt is None:
        raise VideoDecodeError("not a supported video: send MP4/MOV, WebM/MKV or AVI (a photo goes in 'image')")
    frames: list[np.ndarray] = []
    store = FrameBlocks()  # a long clip's frames go to memory-mapped blocks, not the heap
    try:
        with av.open(io.BytesIO(data), mode="r", format=fmt) as container:
            if not container.streams.video:
                raise VideoDecodeError("the file has no video stream")
            stream = container.streams.video[0]
            width, height = stream.codec_context.width, stream.codec_context.height
            if width * height > max_pixels:
                raise ImageTooLargeError(
                    f"video frames are {width}x{height} = {width * height} pixels; the limit is {max_pixels}"
                )
            for frame in container.decode(stream):
                frames.append(store.add(fit_source(frame.to_ndarray(format="rgb24"), max_size)))
                if len(frames) >= max_frames:
                    break
    except av.FFmpegError as exc:
        raise VideoDecodeError(f"cannot decode the video: {exc}") from None
    if not frames:
        raise VideoDecodeError("the video has no decodable frames")
    if len({f.shape for f in frames}) != 1:
        raise VideoDecodeError("the video's frame size changes mid-stream")
    return frames
