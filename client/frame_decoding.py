"""The orchestrator's `frame` output back to pixels, for each of protocol.OUTPUT_FORMATS."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image

from ditto_triton.protocol import OUTPUT_FORMATS

PILLOW_FORMATS = {"jpeg": "JPEG", "png": "PNG"}


def decode_frame(data: np.ndarray, output_format: str, shape: tuple[int, ...]) -> np.ndarray:
    """`data` (the flat uint8 `frame` output) as (H, W, 3) uint8 RGB; ValueError unless it is a frame of
    `shape` (the `frame_shape` output) in `output_format`."""
    if output_format not in OUTPUT_FORMATS:
        raise ValueError(f"output_format must be one of {OUTPUT_FORMATS}, got {output_format!r}")
    if output_format == "rgb":
        if data.size != int(np.prod(shape)):
            raise ValueError(f"{data.size} bytes of raw RGB for a frame of shape {tuple(shape)}")
        return data.reshape(shape)
    try:
        with Image.open(io.BytesIO(data.tobytes())) as image:
            if image.format != PILLOW_FORMATS[output_format]:
                raise ValueError(f"expected a {output_format} frame, got {image.format}")
            rgb = np.asarray(image if image.mode == "RGB" else image.convert("RGB"))
    except (OSError, SyntaxError) as exc:  # Pillow's errors for truncated or undecodable data
        raise ValueError(f"undecodable {output_format} frame: {exc}") from None
    if rgb.shape != tuple(shape):
        raise ValueError(f"a {output_format} frame of {rgb.shape} for a frame_shape of {tuple(shape)}")
    return rgb
