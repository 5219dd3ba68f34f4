"""Per-frame controls sent with the audio: which frames, and what steers them (Ditto's `ctrl_info`).

A request's `controls` is a JSON list of objects, each naming frames with `frame` (one index) or
`from`/`to` (indices, `to` exclusive) and any of Ditto's per-frame keys (`MotionStitch.__call__`):
`delta_pitch`, `delta_yaw`, `delta_roll` (degrees), `alpha_pitch`, `alpha_yaw`, `alpha_roll`
(multipliers), `delta_exp` (63 numbers added to the expression), `vad_alpha` (0..1: below 1 pulls the
expression towards the source's), `fade_alpha` (0..1, with the session's `fade_type`) and
`fade_out_keys`; a frame's value replaces the session's for that key (Ditto's merge), it is not added
to it. Plus this project's `eye_open` ([left, right] openness in 0..3: the LMDM's eye condition for
those frames; it steers generation, so it applies to LMDM windows sampled after it arrives). A later
entry for a frame replaces the fields it names. Controls must arrive no later than the audio of the
frames they name: a frame whose motion was already generated cannot be steered any more, and naming
one is an error (nothing sent is silently dropped).
"""

from __future__ import annotations

import json
import threading
from typing import Any

from ditto_triton.protocol import BadRequest
from ditto_triton.streaming.option_values import INFO_KEYS

MAX_FRAMES_PER_ENTRY = 25 * 3600
POSE_RANGES = {
    **{f"delta_{k}": (-90.0, 90.0) for k in ("pitch", "yaw", "roll")},
    **{f"alpha_{k}": (-10.0, 10.0) for k in ("pitch", "yaw", "roll")},
    "vad_alpha": (0.0, 1.0),
    "fade_alpha": (0.0, 1.0),
}
CONDITION_FIELDS = ("eye_open",)  # steer the LMDM's condition, not the rendering
_FIELDS = (*POSE_RANGES, "delta_exp", "fade_out_keys", *CONDITION_FIELDS)
EYE_OPEN_RANGE = (0.0, 3.0)  # the sample photo's open eyes measure about 1.0, closed ones near 0


class ControlsError(BadRequest):
    """Controls that cannot be applied; the message names the entry and the problem."""


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _entry_frames(i: int, entry: dict[str, Any]) -> range:
    if "frame" in entry and ("from" in entry or "to" in entry):
        raise ControlsError(f"controls[{i}]: give 'frame' or 'from'/'to', not both")
    if "frame" in entry:
        lo = entry["frame"]
        hi = lo + 1 if isinstance(lo, int) else None
    else:
        lo, hi = entry.get("from"), entry.get("to")
    for name, v in (("frame/from", lo), ("to", hi)):
        if not isinstance(v, int) or isinstance(v, bool) or v < 0:
            raise ControlsError(f"controls[{i}]: {name} must be a frame index >= 0, got {v!r}")
    if hi <= lo:
        raise ControlsError(f"controls[{i}]: 'to' ({hi}) must be greater than 'from' ({lo})")
    if hi - lo > MAX_FRAMES_PER_ENTRY:
        raise ControlsError(f"controls[{i}]: at most {MAX_FRAMES_PER_ENTRY} frames per entry")
    return range(lo, hi)


def _entry_fields(i: int, entry: dict[str, Any]) -> dict[str, Any]:
    unknown = sorted(set(entry) - {"frame", "from", "to", *_FIELDS})
    if unknown:
        raise ControlsError(f"controls[{i}]: unknown field(s) {unknown}; known: frame, from, to, {', '.join(_FIELDS)}")
    fields: dict[str, Any] = {}
    for name, (lo, hi) in POSE_RANGES.items():
        if name in entry:
            v = entry[name]
            if not _is_number(v) or not lo <= v <= hi:
                raise ControlsError(f"controls[{i}]: {name} must be a number in {lo:g}..{hi:g}, got {v!r}")
            fields[name] = float(v)
    if "delta_exp" in entry:
        v = entry["delta_exp"]
        if not isinstance(v, list) or len(v) != 63 or not all(_is_number(x) for x in v):
            raise ControlsError(f"controls[{i}]: delta_exp must be a list of 63 numbers")
        fields["delta_exp"] = [float(x) for x in v]
    if "fade_out_keys" in entry:
        v = entry["fade_out_keys"]
        if not isinstance(v, list) or any(k not in INFO_KEYS for k in v):
            raise ControlsError(f"controls[{i}]: fade_out_keys must list keys of {INFO_KEYS}, got {v!r}")
        fields["fade_out_keys"] = tuple(v)
    if "eye_open" in entry:
        v, (lo, hi) = entry["eye_open"], EYE_OPEN_RANGE
        if not isinstance(v, list) or len(v) != 2 or not all(_is_number(x) and lo <= x <= hi for x in v):
            raise ControlsError(f"controls[{i}]: eye_open must be [left, right], each in {lo}..{hi}, got {v!r}")
        fields["eye_open"] = (float(v[0]), float(v[1]))
    if not fields:
        raise ControlsError(f"controls[{i}]: names frames but no control ({', '.join(_FIELDS)})")
    return fields


def parse_controls(text: str | bytes | None) -> list[tuple[range, dict[str, Any]]]:
    if not text:
        return []
    try:
        raw = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ControlsError(f"controls are not valid JSON: {exc}") from exc
    if not isinstance(raw, list) or not all(isinstance(e, dict) for e in raw):
        raise ControlsError("controls must be a JSON list of objects")
    return [(_entry_frames(i, e), _entry_fields(i, e)) for i, e in enumerate(raw)]


class FrameControls:
    """The controls of one session by frame index. `add` runs where audio is fed (before the audio
    it came with), `get` where frames render; the lock makes the two threads safe."""

    def __init__(self) -> None:
        self._by_frame: dict[int, dict[str, Any]] = {}
        self._lock = threading.Lock()

    def add(self, entries: list[tuple[range, dict[str, Any]]], first_open_frame: int) -> None:
        for frames, _ in entries:
            if frames.start < first_open_frame:
                raise ControlsError(
                    f"controls for frame {frames.start} arrived after its motion was generated; "
                    f"frames from {first_open_frame} on can still be steered (send controls with or before their audio)"
                )
        with self._lock:
            for frames, fields in entries:
                render = {k: v for k, v in fields.items() if k not in CONDITION_FIELDS}
                for index in frames if render else ():
                    self._by_frame.setdefault(index, {}).update(render)

    def get(self, index: int, consume: bool = True) -> dict[str, Any]:
        """Frame `index`'s controls (Ditto's ctrl_info[index]); consumed (forgotten) unless `consume` is False."""
        with self._lock:
            fields = self._by_frame.pop(index, None) if consume else self._by_frame.get(index)
        return dict(fields or {})
