"""Errors raised while registering a source portrait.

Every error is a `BadRequest` (through `AvatarError`): it describes a bad request (an unreadable or
oversized image, a photo without a face, bad crop options), so a server maps all of them to one
"invalid argument" answer and keeps the message.
"""

from __future__ import annotations

from ditto_triton.protocol import BadRequest


class AvatarError(BadRequest):
    """The source image or the registration options cannot be used to build an avatar."""


class ImageDecodeError(AvatarError):
    """The bytes are empty, not an image in a supported format, or a damaged/truncated image."""


class VideoDecodeError(AvatarError):
    """The bytes are not a video PyAV can decode, or it has no decodable video frames."""


class ImageTooLargeError(AvatarError):
    """The encoded data or the image it declares (width x height) exceeds the configured limits."""


class NoFaceError(AvatarError):
    """No face was found in the image (or its landmarks could not be located)."""


class InvalidOptionsError(AvatarError):
    """Registration options with an unknown key, a wrong type or an out-of-range value."""
