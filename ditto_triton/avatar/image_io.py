"""Decode an uploaded source image safely and fit it to Ditto's size rules.

`decode_image` turns untrusted bytes into an (H, W, 3) uint8 RGB array: it refuses empty or oversized
payloads and decompression bombs (the declared width x height is checked from the header, before any
pixel is decoded), applies the EXIF orientation and converts every colour mode to RGB.
`fit_source` is Ditto's `check_resize` (architecture reference, section 7.1).
"""

from __future__ import annotations

import io
import logging

import cv2
import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from ditto_triton.avatar.errors import AvatarError, ImageDecodeError, ImageTooLargeError

logger = logging.getLogger(__name__)

DEFAULT_MAX_BYTES = 25_000_000
DEFAULT_MAX_PIXELS = 40_000_000
DEFAULT_MAX_SIZE = 1920

# Formats a portrait upload can reasonably be in. Restricting Pillow's plug-ins keeps exotic parsers
# (EPS runs Ghostscript, for one) away from untrusted bytes. "JPEG" also opens multi-picture (MPO)
# phone JPEGs: Pillow's JPEG plug-in hands those to its MPO class.
SUPPORTED_FORMATS: tuple[str, ...] = ("JPEG", "PNG", "WEBP", "BMP", "GIF", "TIFF")

_SIXTEEN_BIT_MODES = frozenset({"I;16", "I;16L", "I;16B", "I;16N", "I"})
_ALPHA_MODES = frozenset({"RGBA", "RGBa", "LA", "La", "PA"})


def decode_image(
    data: bytes,
    *,
    max_bytes: int = DEFAULT_MAX_BYTES,
    max_pixels: int = DEFAULT_MAX_PIXELS,
) -> np.ndarray:
    """Decode an encoded image into an upright RGB array.

    Args:
        data: the encoded file (JPEG, PNG, WebP, BMP, GIF, TIFF; the first frame of animations).
        max_bytes: largest accepted payload, in bytes.
        max_pixels: largest accepted declared width x height, checked before decoding.

    Returns:
        (H, W, 3) uint8 RGB, C-contiguous, EXIF orientation applied. Transparent pixels are composited
        over white; 16-bit greyscale is scaled to 8 bits.

    Raises:
        ImageDecodeError: empty data, unknown format, damaged or truncated image.
        ImageTooLargeError: more than `max_bytes` bytes or more than `max_pixels` pixels.
    """
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise TypeError(f"image data must be bytes, got {type(data).__name__}")
    size = len(data)
    if size == 0:
        raise ImageDecodeError("image data is empty")
    if size > max_bytes:
        raise ImageTooLargeError(f"image data is {size} bytes; the limit is {max_bytes} bytes")
    try:
        with Image.open(io.BytesIO(data), formats=SUPPORTED_FORMATS) as im:
            _check_declared_size(im.size, max_pixels)
            im.load()
            return _to_rgb(_upright(im))
    except AvatarError:
        raise
    except UnidentifiedImageError as exc:
        raise ImageDecodeError(f"data is not an image in a supported format ({', '.join(SUPPORTED_FORMATS)})") from exc
    except Image.DecompressionBombError as exc:
        raise ImageTooLargeError(f"image is too large to decode: {exc}") from exc
    except MemoryError:
        raise
    # Pillow's decoders report damaged input with many exception types (OSError for truncation,
    # SyntaxError for bad PNG chunks, ValueError, EOFError, struct.error, ...).
    except Exception as exc:
        raise ImageDecodeError(f"cannot decode image: {exc}") from exc


def fit_source(rgb: np.ndarray, max_size: int = DEFAULT_MAX_SIZE) -> np.ndarray:
    """Ditto's `check_resize`: downscale so the long side is <= `max_size`, then make both dims even.

    The downscale keeps the aspect ratio (rounded like Ditto) and uses INTER_AREA. Odd dimensions are
    then cropped by one pixel at the bottom/right (Ditto stretches the whole image by that pixel
    instead; cropping avoids resampling an image that needed no resize).

    Args:
        rgb: (H, W, 3) uint8.
        max_size: cap for the long side in pixels (>= 2).

    Returns:
        (H', W', 3) uint8, C-contiguous, H' and W' even, max(H', W') <= max_size.
    """
    if not isinstance(rgb, np.ndarray) or rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
        raise ValueError(f"expected an (H, W, 3) uint8 image, got {_describe(rgb)}")
    if isinstance(max_size, bool) or not isinstance(max_size, int) or max_size < 2:
        raise ValueError(f"max_size must be an int >= 2, got {max_size!r}")
    h, w = rgb.shape[:2]
    if max(h, w) > max_size:
        if h > w:
            new_h, new_w = max_size, int(round(w * max_size / h))
        else:
            new_h, new_w = int(round(h * max_size / w)), max_size
        new_h, new_w = max(new_h, 1), max(new_w, 1)
        rgb = cv2.resize(rgb, (new_w, new_h), interpolation=cv2.INTER_AREA)
        h, w = new_h, new_w
    even_h, even_w = h - h % 2, w - w % 2
    if even_h == 0 or even_w == 0:
        raise AvatarError(f"image of {w}x{h} pixels is too small")
    return np.ascontiguousarray(rgb[:even_h, :even_w])


def _check_declared_size(size: tuple[int, int], max_pixels: int) -> None:
    width, height = size
    if width <= 0 or height <= 0:
        raise ImageDecodeError(f"image declares an empty size {width}x{height}")
    if width * height > max_pixels:
        raise ImageTooLargeError(
            f"image declares {width}x{height} = {width * height} pixels; the limit is {max_pixels}"
        )


def _upright(im: Image.Image) -> Image.Image:
    """Apply the EXIF orientation; a damaged EXIF block is ignored (the pixels are still valid)."""
    try:
        return ImageOps.exif_transpose(im)
    except Exception as exc:  # noqa: BLE001 - malformed EXIF must not reject a decodable photo
        logger.warning("ignoring unreadable EXIF orientation: %s", exc)
        return im


def _to_rgb(im: Image.Image) -> np.ndarray:
    if im.mode in _SIXTEEN_BIT_MODES:
        # Pillow's own conversion clips 16-bit values at 255; scale to 8 bits instead.
        grey = np.asarray(im).astype(np.float64)
        grey8 = np.clip(np.rint(grey / 257.0), 0, 255).astype(np.uint8)
        return np.ascontiguousarray(np.repeat(grey8[:, :, None], 3, axis=2))
    if im.mode in _ALPHA_MODES or "transparency" in im.info:
        rgba = im.convert("RGBA")
        # Colours under fully transparent pixels are arbitrary (often black): show white instead.
        canvas = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        canvas.alpha_composite(rgba)
        im = canvas
    rgb = np.asarray(im.convert("RGB"), dtype=np.uint8)
    return np.ascontiguousarray(rgb)


def _describe(x: object) -> str:
    if isinstance(x, np.ndarray):
        return f"array of shape {x.shape} and dtype {x.dtype}"
    return type(x).__name__
