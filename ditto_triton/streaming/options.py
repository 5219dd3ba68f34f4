"""Session options sent at START, with Ditto's online defaults, validated strictly."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from typing import Any

from ditto_triton.streaming.conditions import EMOTIONS

OUTPUT_FORMATS = ("rgb", "jpeg")


class OptionsError(ValueError):
    """Session options that cannot be used; the message names the option."""


@dataclass(frozen=True)
class SessionOptions:
    overlap: int = 70  # Ditto online cfg; new frames per LMDM window = 80 - overlap
    sampling_steps: int = 10  # DDIM steps (guided LMDM calls) per window
    seed: int = 0  # per-session noise seed
    emotion: int = EMOTIONS.index("neutral")
    smooth_k: int = 3  # moving average over pose dims
    delta_pitch: float = 2.0  # Ditto online cfg's overall_ctrl_info
    delta_yaw: float = 0.0
    delta_roll: float = 0.0
    output_format: str = "rgb"
    jpeg_quality: int = 90

    _RANGES = {
        "overlap": (40, 79),
        "sampling_steps": (1, 1000),
        "seed": (0, 2**63 - 1),
        "emotion": (0, len(EMOTIONS) - 1),
        "smooth_k": (1, 31),
        "delta_pitch": (-90.0, 90.0),
        "delta_yaw": (-90.0, 90.0),
        "delta_roll": (-90.0, 90.0),
        "jpeg_quality": (1, 100),
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
            want = type(getattr(cls, name))
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
        return cls(**values)

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
