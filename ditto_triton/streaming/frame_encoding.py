"""How a session's frames go on the wire (session option `output_format`): raw RGB, JPEG or PNG.

OpenCV encodes both: with the same settings its JPEG is byte for byte Pillow's (both are libjpeg-turbo,
4:2:0) and its PNG decodes to the same pixels, for less CPU (docs/benchmarks.md, frame formats).
"""

from __future__ import annotations

from collections.abc import Callable

import cv2
import numpy as np

from ditto_triton.protocol import OUTPUT_FORMATS
from ditto_triton.streaming.options import SessionOptions

FrameEncoder = Callable[[np.ndarray], np.ndarray]


def encode_frame(rgb: np.ndarray, output_format: str, jpeg_quality: int = 90, png_compression: int = 1) -> np.ndarray:
    """`rgb` (H, W, 3) uint8 as the `frame` output's bytes in `output_format`, a flat uint8 array (raw RGB
    is a view of the frame: no copy before the one into the response)."""
    if output_format == "rgb":
        return np.ascontiguousarray(rgb).reshape(-1)
    if output_format == "jpeg":
        extension, params = ".jpg", [cv2.IMWRITE_JPEG_QUALITY, jpeg_quality]
    elif output_format == "png":
        extension, params = ".png", [cv2.IMWRITE_PNG_COMPRESSION, png_compression]
    else:
        raise ValueError(f"output_format must be one of {OUTPUT_FORMATS}, got {output_format!r}")
    ok, data = cv2.imencode(extension, cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), params)
    if not ok:
        raise RuntimeError(f"OpenCV could not encode a {rgb.shape} frame as {output_format}")
    return data.reshape(-1)


def frame_encoder(options: SessionOptions) -> FrameEncoder:
    """The session's encoding, as one callable from a frame's RGB to its bytes."""
    fmt, quality, compression = options.output_format, options.jpeg_quality, options.png_compression
    return lambda rgb: encode_frame(rgb, fmt, quality, compression)
