"""Session options sent at START, with Ditto's defaults per mode, validated strictly.

Names are Ditto's where Ditto has the option (`StreamSDK.setup`, `MotionStitch`, `Audio2Motion`;
docs/session-options.md has the table). A default of None means "Ditto's choice": the mode's default
(MODE_DEFAULTS: its online cfg's values online, its code defaults offline) or, for the motion
stitching keys, Ditto's choice for a photo or a video; a control left None is absent, as in Ditto.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from typing import Any

from ditto_triton.protocol import OUTPUT_FORMATS
from ditto_triton.streaming import option_values as ov
from ditto_triton.streaming.conditions import EMOTIONS
from ditto_triton.streaming.motion_vector import POSE_DIMS
from ditto_triton.streaming.option_values import OptionsError

__all__ = ["OptionsError", "SessionOptions"]

MODES = ("online", "offline")
FIRST_WINDOW = ("fuse", "emit")  # Ditto's: window 0's frames wait for window 1's crossfade | ours: sent at once
ONLINE_MIN_OVERLAP = 40  # below half a window Ditto's online loop drops frames (reference §5.6)
# Per-mode defaults: Ditto's online cfg, and its code defaults (used by its offline pipeline).
MODE_DEFAULTS = {
    "online": {
        "overlap": 70,
        "sampling_steps": 10,
        "delta_pitch": 2.0,
        "fix_kp_cond": 1,
        "fix_kp_cond_dim": (0, POSE_DIMS),
    },
    "offline": {"overlap": 10, "sampling_steps": 50, "fix_kp_cond": 0},
}
EMOTION_LABELS = range(len(EMOTIONS))
OVERALL_CONTROLS = (
    "delta_pitch",
    "delta_yaw",
    "delta_roll",
    "alpha_pitch",
    "alpha_yaw",
    "alpha_roll",
    "vad_alpha",
    "delta_exp",
)


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


def _choice(name: str, choices: tuple[str, ...]):
    def parse(value: Any) -> str:
        if value not in choices:
            raise OptionsError(f"session option {name!r} must be one of {choices}, got {value!r}")
        return value

    return parse


@dataclass(frozen=True)
class SessionOptions:
    mode: str = "online"  # "offline": frames once END has brought the whole clip (Ditto's offline loop)
    first_window: str = "fuse"  # online: FIRST_WINDOW; "emit" halves the wait for the first frame (ours)
    overlap: int | None = None  # overlap_v2; None: 70 online, 10 offline; new frames per window = 80 - overlap
    sampling_steps: int | None = None  # sampling_timesteps; None: 10 online, 50 offline
    seed: int = 0  # per-session noise (and random blink gaps) seed
    guidance_weight: float = 2.0  # classifier-free guidance: x0 = unc + w (cond - unc); Ditto fixes 2
    emotion: int | tuple = EMOTIONS.index("neutral")  # emo: label, labels, or per-frame label lists
    emotion_array: tuple | None = None  # emo as an (m, 8) array of probabilities, cycled over frames
    eye_open: tuple[float, float] | None = None  # None: the avatar's measured eye openness
    eye_ball: tuple[float, ...] | None = None  # None: the avatar's measured iris offsets (6)
    eye_f0_mode: bool = False  # a video avatar's eye conditions from its frame 0
    smooth_k: int = 3  # smo_k_d: moving average over pose dims
    fix_kp_cond: int | None = None  # reset period of LMDM's motion condition; None: 1 online, 0 (never) offline
    fix_kp_cond_dim: tuple[int, int] | None = None  # dims kept from the last frame on reset; None: [0, 202] online
    v_min_max_for_clip: tuple | None = None  # [[265 minima], [265 maxima]] clip of the generated motion
    use_d_keys: tuple | None = None  # driven keys (list, or {key: weight}); None: photo all pose+exp+t, video exp
    relative_d: bool = True  # drive relative to the first generated frame
    drive_eye: bool | None = None  # None: True for a photo, False for a video
    delta_eye_arr: tuple | None = None  # (n, 63) scripted blink: expression offsets per blink frame
    delta_eye_open_n: int | tuple[int, ...] = 0  # frames between blinks: -1 none, 0 random 60..100, n, or a list
    fade_type: str = ""  # "" (fades off), "d0" (towards the first frame), "s" (towards the source)
    fade_out_keys: tuple[str, ...] = ("exp",)  # what a fade moves
    flag_stitching: bool = True  # the stitching network corrects the driving keypoints
    ch_avatar: str | None = None  # ch_info: a registered avatar whose conditions and scale steer this one
    delta_pitch: float | None = None  # overall_ctrl_info, degrees; None online: 2 (Ditto's online cfg)
    delta_yaw: float | None = None
    delta_roll: float | None = None
    alpha_pitch: float | None = None  # overall_ctrl_info multipliers of the pose
    alpha_yaw: float | None = None
    alpha_roll: float | None = None
    vad_alpha: float | None = None  # < 1 pulls the whole expression towards the source's
    delta_exp: tuple[float, ...] | None = None  # 63 numbers added to the expression
    fade_in: int = 0  # frames of fade_alpha rising 0 -> 1 at the start (needs fade_type)
    fade_out: int = 0  # frames of fade_alpha falling to 0 at the end (needs fade_type; delays frames by as many)
    return_motion: bool = False  # each frame also carries its motion row, keypoints and controls (motion files)
    motion_d0: tuple[float, ...] | None = None  # a motion session: rows are sent instead of audio, d0 is this
    output_format: str = "rgb"  # how frames are sent: OUTPUT_FORMATS (protocol.py); raw RGB to a plain client
    jpeg_quality: int = 90  # with output_format "jpeg"
    png_compression: int = 1  # with "png": zlib level 0..9; 6 (zlib's) took 2.5-3x the CPU of 1 for 5-9 % fewer bytes
    output_max_size: int = 0  # long side of the output frames in pixels; 0 keeps the registered photo's size

    _TYPES = {
        "overlap": int,
        "sampling_steps": int,
        "fix_kp_cond": int,
        "drive_eye": bool,
        **{n: float for n in ("delta_pitch", "delta_yaw", "delta_roll", "alpha_pitch", "alpha_yaw", "alpha_roll")},
        "vad_alpha": float,
        "ch_avatar": str,
    }  # where the default (None) does not tell the type
    _RANGES = {
        "overlap": (1, 79),
        "sampling_steps": (1, 1000),
        "seed": (0, 2**63 - 1),
        "guidance_weight": (0.0, 10.0),
        "smooth_k": (1, 31),
        "fix_kp_cond": (0, 10_000),
        "delta_pitch": (-90.0, 90.0),
        "delta_yaw": (-90.0, 90.0),
        "delta_roll": (-90.0, 90.0),
        "alpha_pitch": (-10.0, 10.0),
        "alpha_yaw": (-10.0, 10.0),
        "alpha_roll": (-10.0, 10.0),
        "vad_alpha": (0.0, 1.0),
        "fade_in": (0, 250),
        "fade_out": (0, 250),
        "jpeg_quality": (1, 100),
        "png_compression": (0, 9),
        "output_max_size": (0, 4096),
    }
    _PARSERS = {
        "emotion": _emotion,
        "emotion_array": ov.emotion_array,
        "eye_open": lambda v: ov.number_list("eye_open", v, 2),
        "eye_ball": lambda v: ov.number_list("eye_ball", v, 6),
        "fix_kp_cond_dim": ov.fix_kp_cond_dim,
        "v_min_max_for_clip": ov.v_min_max_for_clip,
        "use_d_keys": ov.use_d_keys,
        "delta_eye_arr": ov.delta_eye_arr,
        "delta_eye_open_n": ov.delta_eye_open_n,
        "fade_type": _choice("fade_type", ov.FADE_TYPES),
        "fade_out_keys": ov.fade_out_keys,
        "delta_exp": ov.delta_exp,
        "motion_d0": lambda v: ov.number_list("motion_d0", v, 265),
        "output_format": _choice("output_format", OUTPUT_FORMATS),
        "first_window": _choice("first_window", FIRST_WINDOW),
    }

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> SessionOptions:
        if not isinstance(raw, dict):
            raise OptionsError(f"session options must be a JSON object, got {type(raw).__name__}")
        fields = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(raw) - fields)
        if unknown:
            raise OptionsError(f"unknown session option(s) {unknown}; known: {sorted(fields)}")
        values = {name: cls._parse(name, value) for name, value in raw.items()}
        if 0 < values.get("output_max_size", 0) < 16:
            raise OptionsError("session option 'output_max_size' must be 0 (the photo's size) or at least 16")
        return cls(**values)

    @classmethod
    def _parse(cls, name: str, value: Any) -> Any:
        if value is None and getattr(cls, name) is None:
            return None  # JSON null: Ditto's choice, as if not given
        if name in cls._PARSERS:
            return cls._PARSERS[name](value)
        want = cls._TYPES.get(name) or type(getattr(cls, name))
        if want is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if type(value) is not want:
            raise OptionsError(f"session option {name!r} must be {want.__name__}, got {value!r}")
        lo_hi = cls._RANGES.get(name)
        if lo_hi and not lo_hi[0] <= value <= lo_hi[1]:
            raise OptionsError(f"session option {name!r}={value!r} outside {lo_hi[0]}..{lo_hi[1]}")
        return value

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
        if self.mode == "offline" and self.first_window != "fuse":
            raise OptionsError(
                "session option 'first_window' is for streaming (mode 'online'): offline every frame waits for END"
            )
        if (self.fade_in or self.fade_out) and not self.fade_type:
            raise OptionsError(
                "session options 'fade_in'/'fade_out' set fade_alpha, which moves nothing unless 'fade_type' is "
                "'d0' (towards the first frame) or 's' (towards the source), as in Ditto"
            )

    @property
    def overall_ctrl_info(self) -> dict[str, Any]:
        """Ditto's overall_ctrl_info: the controls given for every frame (absent ones left out)."""
        return {name: getattr(self, name) for name in OVERALL_CONTROLS if getattr(self, name) is not None}

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
