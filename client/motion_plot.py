"""A picture of a session's motion over its audio (`ditto-render --motion-plot`), drawn with Pillow.

Per frame, on the audio's time axis, from what a session returns with `return_motion` (a motion file):

- mouth opening: the vertical extent (largest y minus smallest y) of Ditto's lip keypoints (6, 12, 14, 17,
  19, 20) in the driving keypoints after stitching, minus the same extent in the photo's keypoints, in
  percent of the face crop's height (keypoints span the crop as -1..1). Positive: taller than in the photo.
- eye openness: the same for Ditto's eye keypoints (11, 13, 15, 16, 18).
- head pose: pitch, yaw and roll of each generated motion row (Ditto's bin expectation, 3 E[bin] - 97.5
  degrees over its 66 bins) minus those of the session's d0, the row the motion is relative to: how far
  the head turned from where it started (delta_* controls come on top).

The two openness curves are proxies read off keypoint groups, not measured on the picture; with real
weights they rise when the mouth opens or the eyes widen, and show lip sync against the waveform.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from ditto_triton.client.motion_file import MotionFile, motion_file_from
from ditto_triton.protocol import FPS, SAMPLE_RATE

LIP_KP = (6, 12, 14, 17, 19, 20)
EYE_KP = (11, 13, 15, 16, 18)
POSE_BINS = {"pitch": slice(1, 67), "yaw": slice(67, 133), "roll": slice(133, 199)}
PERCENT_PER_UNIT = 50.0  # the crop's height is 2 keypoint units
SIZE = (1200, 800)
_MARGIN = (84, 44, 24, 48)  # left, top, right, bottom
_GAP = 26  # between panels (room for each panel's title)
_BACKGROUND, _INK, _GRID, _WAVE, _WAVE_FAINT = "white", (40, 40, 40), (225, 225, 225), (90, 90, 90), (232, 232, 236)
_COLOURS = {"mouth": (200, 40, 40), "eyes": (30, 100, 200), "pitch": (200, 90, 0), "yaw": (20, 140, 60)}
_COLOURS["roll"] = (130, 60, 170)


@dataclass(frozen=True)
class MotionCurves:
    seconds: np.ndarray  # (n,) each frame's presentation time
    mouth: np.ndarray  # (n,) percent of the crop's height, 0 = as in the photo
    eyes: np.ndarray  # (n,) likewise
    pose: dict[str, np.ndarray]  # pitch, yaw, roll: (n,) degrees from d0


def pose_degrees(bins: np.ndarray) -> np.ndarray:
    """(..., 66) bin logits -> (...,) degrees: Ditto's bin66_to_degree (softmax expectation, 3-degree bins)."""
    bins = np.asarray(bins, np.float64)
    e = np.exp(bins - bins.max(axis=-1, keepdims=True))
    return (e / e.sum(axis=-1, keepdims=True) * np.arange(bins.shape[-1])).sum(axis=-1) * 3 - 97.5


def vertical_extent(keypoints: np.ndarray, group: Sequence[int]) -> np.ndarray:
    """(..., 21, 3) keypoints -> (...,) largest minus smallest y of the keypoints in `group`."""
    y = np.asarray(keypoints, np.float64)[..., list(group), 1]
    return y.max(axis=-1) - y.min(axis=-1)


def motion_curves(motion: MotionFile) -> MotionCurves:
    """The plotted quantities of every frame of `motion` (see the module docstring)."""

    def opening(group: Sequence[int]) -> np.ndarray:
        return (vertical_extent(motion.x_d, group) - vertical_extent(motion.x_s, group)) * PERCENT_PER_UNIT

    pose = {
        name: pose_degrees(motion.motion[:, bins]) - pose_degrees(motion.d0[bins]) for name, bins in POSE_BINS.items()
    }
    return MotionCurves(np.arange(motion.frames) / FPS, opening(LIP_KP), opening(EYE_KP), pose)


def _value_range(series: Sequence[np.ndarray], min_span: float) -> tuple[float, float]:
    """Axis limits that hold every value, 0 and at least `min_span`, with a little headroom."""
    values = np.concatenate([np.asarray(s, np.float64).reshape(-1) for s in series] + [np.zeros(1)])
    lo, hi = float(values.min()), float(values.max())
    if hi - lo < min_span:
        middle = (hi + lo) / 2
        lo, hi = middle - min_span / 2, middle + min_span / 2
    pad = (hi - lo) * 0.08
    return lo - pad, hi + pad


def _ticks(lo: float, hi: float, count: int = 4) -> np.ndarray:
    """Round-numbered ticks inside [lo, hi]: steps of 1, 2 or 5 times a power of ten."""
    raw = (hi - lo) / count
    power = 10 ** np.floor(np.log10(raw))
    step = min((m * power for m in (1, 2, 5, 10) if m * power >= raw), default=10 * power)
    return np.arange(np.ceil(lo / step) * step, hi + step * 1e-6, step)


@dataclass(frozen=True)
class _Panel:
    """One strip of the plot: a box in pixels, its value range, and time -> x."""

    box: tuple[int, int, int, int]  # left, top, right, bottom
    lo: float
    hi: float
    seconds: float

    def x(self, t: np.ndarray) -> np.ndarray:
        left, _, right, _ = self.box
        return left + np.asarray(t, np.float64) / self.seconds * (right - left)

    def y(self, v: np.ndarray) -> np.ndarray:
        _, top, _, bottom = self.box
        return bottom - (np.asarray(v, np.float64) - self.lo) / (self.hi - self.lo) * (bottom - top)


def _frame_panel(draw: ImageDraw.ImageDraw, panel: _Panel, title: str, font, unit_ticks: bool = True) -> None:
    left, top, right, bottom = panel.box
    if unit_ticks:
        for value in _ticks(panel.lo, panel.hi):
            y = float(panel.y(value))
            draw.line([(left, y), (right, y)], fill=_GRID)
            draw.text((left - 6, y), f"{value + 0.0:g}", fill=_INK, font=font, anchor="rm")
    draw.rectangle(panel.box, outline=_INK)
    draw.text((left, top - 4), title, fill=_INK, font=font, anchor="ld")


def _waveform(draw: ImageDraw.ImageDraw, panel: _Panel, audio: np.ndarray, colour, peak: float) -> None:
    """The audio's min..max per pixel column, scaled so `peak` fills the panel's height."""
    left, top, right, bottom = panel.box
    if not audio.size:
        return
    middle, half = (top + bottom) / 2, (bottom - top) / 2 * 0.95
    columns = np.array_split(audio, max(1, int(panel.x(audio.size / SAMPLE_RATE) - left)))
    for i, chunk in enumerate(columns):
        if chunk.size:
            hi, lo = float(chunk.max()) / peak, float(chunk.min()) / peak
            draw.line([(left + i, middle - hi * half), (left + i, middle - lo * half)], fill=colour)


def _line(draw: ImageDraw.ImageDraw, panel: _Panel, seconds: np.ndarray, values: np.ndarray, colour) -> None:
    points = list(zip(panel.x(seconds).tolist(), panel.y(values).tolist()))
    if len(points) == 1:
        x, y = points[0]
        draw.ellipse([(x - 2, y - 2), (x + 2, y + 2)], fill=colour)
    else:
        draw.line(points, fill=colour, width=2, joint="curve")


def _legend(draw: ImageDraw.ImageDraw, panel: _Panel, names: Sequence[str], font) -> None:
    x = panel.box[2] - 8
    for name in reversed(names):
        width = draw.textlength(name, font=font)
        draw.text((x, panel.box[1] - 4), name, fill=_COLOURS[name], font=font, anchor="rd")
        x -= width + 16


def _time_axis(draw: ImageDraw.ImageDraw, panels: list[_Panel], font) -> None:
    bottom = panels[-1].box[3]
    for t in _ticks(0.0, panels[-1].seconds, count=10):
        x = float(panels[-1].x(t))
        for panel in panels:
            draw.line([(x, panel.box[1] + 1), (x, panel.box[3] - 1)], fill=_GRID)
        draw.line([(x, bottom), (x, bottom + 5)], fill=_INK)
        draw.text((x, bottom + 8), f"{t:g}", fill=_INK, font=font, anchor="mt")
    draw.text((panels[-1].box[2], bottom + 26), "seconds", fill=_INK, font=font, anchor="rt")


def _layout(size: tuple[int, int], seconds: float, ranges: list[tuple[float, float]]) -> list[_Panel]:
    """Panels stacked top to bottom: the waveform (thinner), then one per range."""
    left, top, right, bottom = _MARGIN
    weights = [0.6] + [1.0] * len(ranges)
    usable = size[1] - top - bottom - _GAP * (len(weights) - 1)
    panels, y = [], top
    for weight, (lo, hi) in zip(weights, [(-1.0, 1.0), *ranges]):
        height = int(usable * weight / sum(weights))
        panels.append(_Panel((left, y, size[0] - right, y + height), lo, hi, seconds))
        y += height + _GAP
    return panels


def draw_motion_plot(curves: MotionCurves, audio16: np.ndarray, title: str = "", size=SIZE) -> Image.Image:
    """Waveform, mouth opening, eye openness and head pose of every frame, on one time axis."""
    if not curves.seconds.size:
        raise ValueError("no frames to plot")
    audio = np.asarray(audio16, np.float32).reshape(-1)
    seconds = max(audio.size / SAMPLE_RATE, (curves.seconds[-1] + 1 / FPS))
    pose = list(curves.pose.values())
    ranges = [_value_range([curves.mouth], 2.0), _value_range([curves.eyes], 2.0), _value_range(pose, 4.0)]
    panels = _layout(size, seconds, ranges)
    image = Image.new("RGB", size, _BACKGROUND)
    draw = ImageDraw.Draw(image)
    font, small = ImageFont.load_default(size=15), ImageFont.load_default(size=13)
    peak = max(float(np.abs(audio).max(initial=0.0)), 1e-6)
    _waveform(draw, panels[0], audio, _WAVE, peak)
    titles = ["audio", "mouth opening (% of the crop)", "eye openness (% of the crop)", "head pose from d0 (°)"]
    for panel, name in zip(panels, titles):
        if panel is not panels[0]:
            _waveform(draw, panel, audio, _WAVE_FAINT, peak)
        _frame_panel(draw, panel, name, small, unit_ticks=panel is not panels[0])
    _line(draw, panels[1], curves.seconds, curves.mouth, _COLOURS["mouth"])
    _line(draw, panels[2], curves.seconds, curves.eyes, _COLOURS["eyes"])
    for name, values in curves.pose.items():
        _line(draw, panels[3], curves.seconds, values, _COLOURS[name])
    _legend(draw, panels[3], list(curves.pose), small)
    _time_axis(draw, panels, small)
    draw.text((size[0] / 2, 8), title or "motion per frame", fill=_INK, font=font, anchor="mt")
    return image


def write_motion_plot(path: Path, records: Sequence[Any], audio16: np.ndarray, title: str = "") -> Path:
    """Draw the frames' motion records (`ReceivedFrame.motion`, in frame order) over the audio into a PNG."""
    curves = motion_curves(motion_file_from(list(records), {}))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    draw_motion_plot(curves, audio16, title).save(path, format="PNG")
    return path
