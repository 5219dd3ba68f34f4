"""Parsers for the session options whose JSON value is more than a number or a string: Ditto's motion
controls (`use_d_keys`, `delta_eye_arr`, `delta_eye_open_n`, `fade_out_keys`, `fix_kp_cond_dim`,
`v_min_max_for_clip`, `emotion_array`, `delta_exp`). Each returns a hashable value or raises
`OptionsError` naming the option."""

from __future__ import annotations

from typing import Any

from ditto_triton.protocol import BadRequest
from ditto_triton.streaming.motion_vector import MOTION_DIM

INFO_KEYS = ("exp", "pitch", "yaw", "roll", "t", "scale")
FADE_TYPES = ("", "d0", "s")
MAX_BLINK_FRAMES = 100


class OptionsError(BadRequest):
    """Session options that cannot be used; the message names the option."""


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def number_list(name: str, value: Any, length: int) -> tuple[float, ...]:
    if not isinstance(value, list) or len(value) != length or not all(_is_number(v) for v in value):
        raise OptionsError(f"session option {name!r} must be a list of {length} numbers, got {str(value)[:80]}")
    return tuple(float(v) for v in value)


def _rows(name: str, value: Any, width: int, min_rows: int, max_rows: int) -> tuple[tuple[float, ...], ...]:
    if not isinstance(value, list) or not min_rows <= len(value) <= max_rows:
        raise OptionsError(f"session option {name!r} must be a list of {min_rows}..{max_rows} rows of {width} numbers")
    return tuple(number_list(f"{name}[{i}]", row, width) for i, row in enumerate(value))


def use_d_keys(value: Any) -> tuple[str, ...] | tuple[tuple[str, float], ...]:
    """A list of driven keys, or {key: weight} (kept as sorted pairs so the options stay hashable)."""
    keys = list(value) if isinstance(value, (list, dict)) else None
    if not keys or any(k not in INFO_KEYS for k in keys):
        raise OptionsError(f"session option 'use_d_keys' must list or map keys of {INFO_KEYS}, got {value!r}")
    if isinstance(value, dict):
        if not all(_is_number(w) for w in value.values()):
            raise OptionsError("session option 'use_d_keys' as a mapping takes numbers (weights)")
        return tuple(sorted((k, float(w)) for k, w in value.items()))
    return tuple(value)


def delta_eye_arr(value: Any) -> tuple[tuple[float, ...], ...]:
    return _rows("delta_eye_arr", value, 63, 1, MAX_BLINK_FRAMES)


def delta_eye_open_n(value: Any) -> int | tuple[int, ...]:
    """-1: no blinks, 0: random gaps of 60..100 frames, n > 0: a fixed gap, a list: gaps cycled."""
    if isinstance(value, int) and not isinstance(value, bool) and value >= -1:
        return value
    if (
        isinstance(value, list)
        and value
        and all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in value)
    ):
        return tuple(value)
    raise OptionsError(
        f"session option 'delta_eye_open_n' must be -1, 0, a frame count or a list of them, got {value!r}"
    )


def fade_out_keys(value: Any) -> tuple[str, ...]:
    if not isinstance(value, list) or any(k not in INFO_KEYS for k in value):
        raise OptionsError(f"session option 'fade_out_keys' must list keys of {INFO_KEYS}, got {value!r}")
    return tuple(value)


def fix_kp_cond_dim(value: Any) -> tuple[int, int]:
    ok = (
        isinstance(value, list)
        and len(value) == 2
        and all(isinstance(v, int) and not isinstance(v, bool) for v in value)
    )
    if not ok or not 0 <= value[0] <= value[1] <= MOTION_DIM:
        raise OptionsError(
            f"session option 'fix_kp_cond_dim' must be [start, end] within 0..{MOTION_DIM}, got {value!r}"
        )
    return (value[0], value[1])


def v_min_max_for_clip(value: Any) -> tuple[tuple[float, ...], tuple[float, ...]]:
    low, high = _rows("v_min_max_for_clip", value, MOTION_DIM, 2, 8)[:2]  # Ditto reads rows 0 and 1
    if any(lo > hi for lo, hi in zip(low, high)):
        raise OptionsError("session option 'v_min_max_for_clip': every minimum must be <= its maximum")
    return low, high


def emotion_array(value: Any) -> tuple[tuple[float, ...], ...]:
    """Per-frame emotion probabilities (m, 8), cycled over the frames as Ditto does."""
    rows = _rows("emotion_array", value, 8, 1, 25 * 3600)
    if any(v < 0 for row in rows for v in row):
        raise OptionsError("session option 'emotion_array' holds probabilities: no negative values")
    return rows


def delta_exp(value: Any) -> tuple[float, ...]:
    return number_list("delta_exp", value, 63)
