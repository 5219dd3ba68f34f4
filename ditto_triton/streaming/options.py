"""Session options sent at START, with Ditto's online defaults, validated strictly."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from typing import Any

from ditto_triton.protocol import BadRequest
from ditto_triton.streaming.conditions import EMOTIONS

OUTPUT_FORMATS = ("rgb", "jpeg")
MODES = ("online", "offline")
ONLINE_MIN_OVERLAP = 40  # below half a window Ditto's online loop drops frames (reference §5.6)
# Per-mode defaults: Ditto's online cfg, and its code defaults (used by its offline pipeline).
MODE_DEFAULTS = {"online": {"overlap": 70, "sampling_steps": 10}, "offline": {"overlap": 10, "sampling_steps": 50}}
EMOTION_LABELS = range(len(EMOTIONS))


class OptionsError(BadRequest):
    """Session options that cannot be used; the message names the option."""


def _number_list(name: str, value: Any, length: int) -> tuple[float, ...]:
    if (
        not isinstance(value, list)
        or len(value) != length
        or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value)
    ):
        raise OptionsError(f"session option {name!r} must be a list of {length} numbers, got {value!r}")
    return tuple(float(v) for v in value)


def _emotion(value: Any) -> int | tuple[int, ...] | tuple[tuple[int, ...], ...]:
    """An int label, a list of labels (mixed), or a list of per-frame lists (cycled over frames)."""

    def labels(item: Any) -> tuple[int, ...]:
        if (
            not isinstance(item, list)
            or not item
            or not all(isinstance(v, int) and not isinstance(v, bool) for v in item)
        ):
            raise OptionsError(
                f"session option 'emotion' must be an int, a list of ints or a list of lists of ints, got {value!r}"
            )
        bad = [v for v in item if v not in EMOTION_LABELS]
        if bad:
            raise OptionsError(f"emotion label(s) {bad} outside 0..{len(EMOTIONS) - 1} ({', '.join(EMOTIONS)})")
        return tuple(item)

    if isinstance(value, int) and not isinstance(value, bool):
        return labels([value])[0]
    if isinstance(value, list) and value and all(isinstance(v, list) for v in value):
        return tuple(labels(v) for v in value)
    return labels(value)


@dataclass(frozen=True)
class SessionOptions:
    mode: str = "online"  # "offline": frames once END has brought the whole clip (Ditto's offline loop)
    overlap: int | None = None  # None: the mode's default (70 online, 10 offline); new frames per window = 80 - overlap
    sampling_steps: int | None = None  # DDIM steps (guided LMDM calls) per window; None: 10 online, 50 offline
    seed: int = 0  # per-session noise seed
    guidance_weight: float = 2.0  # classifier-free guidance: x0 = unc + w (cond - unc); Ditto fixes 2
    emotion: int | tuple = EMOTIONS.index("neutral")
    eye_open: tuple[float, float] | None = None  # None: the avatar's measured eye openness
    eye_ball: tuple[float, ...] | None = None  # None: the avatar's measured iris offsets (6)
    smooth_k: int = 3  # moving average over pose dims
    delta_pitch: float = 2.0  # Ditto online cfg's overall_ctrl_info
    delta_yaw: float = 0.0
    delta_roll: float = 0.0
    relative: bool = True  # drive relative to the first generated frame (Ditto's relative_d)
    fade_in: int = 0  # frames over which motion rises from the source's pose and expression
    fade_out: int = 0  # frames over which motion returns to the source at the end (delays frames by as many)
    output_format: str = "rgb"
    jpeg_quality: int = 90
    output_max_size: int = 0  # long side of the output frames in pixels; 0 keeps the registered photo's size

    _TYPES = {"overlap": int, "sampling_steps": int}  # where the default (None) does not tell the type
    _RANGES = {
        "overlap": (1, 79),
        "sampling_steps": (1, 1000),
        "seed": (0, 2**63 - 1),
        "guidance_weight": (0.0, 10.0),
        "smooth_k": (1, 31),
        "delta_pitch": (-90.0, 90.0),
        "delta_yaw": (-90.0, 90.0),
        "delta_roll": (-90.0, 90.0),
        "fade_in": (0, 250),
        "fade_out": (0, 250),
        "jpeg_quality": (1, 100),
        "output_max_size": (0, 4096),
    }
    _PARSERS = {
        "emotion": _emotion,
        "eye_open": lambda v: _number_list("eye_open", v, 2),
        "eye_ball": lambda v: _number_list("eye_ball", v, 6),
    }

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> SessionOptions:
        if not isinstance(raw, dict):
            raise OptionsError(f"session options must be a JSON object, got {type(raw).__name__}")
        fields = {f.name: f for f in dataclasses.fields(cls)}
        unknown = sorted(set(raw) - set(fields))
        if unknown:
            raise OptionsError(f"unknown session option(s) {unknown}; known: {sorted(fields)}")
        values = {}
        for name, value in raw.items():
            if name in cls._PARSERS:
                values[name] = cls._PARSERS[name](value)
                continue
            want = cls._TYPES.get(name) or type(getattr(cls, name))
            if want is float and isinstance(value, int) and not isinstance(value, bool):
                value = float(value)
            if type(value) is not want:
                raise OptionsError(f"session option {name!r} must be {want.__name__}, got {value!r}")
            lo_hi = cls._RANGES.get(name)
            if lo_hi and not lo_hi[0] <= value <= lo_hi[1]:
                raise OptionsError(f"session option {name!r}={value!r} outside {lo_hi[0]}..{lo_hi[1]}")
            values[name] = value
        if values.get("output_format", "rgb") not in OUTPUT_FORMATS:
            raise OptionsError(f"output_format must be one of {OUTPUT_FORMATS}, got {values['output_format']!r}")
        if 0 < values.get("output_max_size", 0) < 16:
            raise OptionsError("session option 'output_max_size' must be 0 (the photo's size) or at least 16")
        return cls(**values)

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise OptionsError(f"session option 'mode' must be one of {MODES}, got {self.mode!r}")
        for name, value in MODE_DEFAULTS[self.mode].items():
            if getattr(self, name) is None:
                object.__setattr__(self, name, value)
        if self.mode == "online" and self.overlap < ONLINE_MIN_OVERLAP:
            raise OptionsError(
                f"session option 'overlap'={self.overlap} is below {ONLINE_MIN_OVERLAP}: Ditto's online loop "
                f"drops frames there; use {ONLINE_MIN_OVERLAP}..79 online, or mode 'offline'"
            )

    @classmethod
    def from_json(cls, text: str | bytes | None) -> SessionOptions:
        if not text:
            return cls()
        try:
            raw = json.loads(text)
        except json.JSONDecodeError as exc:
            raise OptionsError(f"session options are not valid JSON: {exc}") from exc
        return cls.from_dict(raw)

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self))
