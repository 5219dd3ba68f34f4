"""Ditto's Audio2Motion: 80-frame LMDM windows, overlap fusion, smoothing (reference §5.4–§5.6).

Online (`OnlineMotion`): window n covers feature rows [nV, nV + 80) of (overlap rows of encoded
silence + real features), with V = 80 - overlap new frames per window. Window 0 only seeds the
fusion tail and d0; window n >= 1 crossfades its first frames into the previous result and
releases the previous window's V frames. With `emit_first_window` (session option first_window
"emit", ours, not Ditto's) window 0 sends its last V frames at once, before window 1 crossfades
into them, and window 1 sends nothing new: the first frame needs V + 2 frames of audio instead of
2V + 2, and from frame V on every frame, and the audio it waits for, is Ditto's. At the end of the stream the remaining features are
padded with the last row to a full window, and the frames of the last window are released
unfused, up to the stream's frame count.

Offline (`OfflineMotion`): the whole clip's features are known. Windows start at frames 0, V, 2V,
... (the last one padded with its last condition row); the first window is part of the output, each
later one crossfades its first `overlap` frames into the result; the whole sequence is then
smoothed once more and d0 is its first frame.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from ditto_triton.streaming.conditions import ConditionBuilder
from ditto_triton.streaming.motion_vector import MOTION_DIM, POSE_DIMS
from ditto_triton.streaming.sampler import DDIMSampler
from ditto_triton.streaming.smoothing import moving_average

# lmdm(x (1,80,265), cond_frame (1,265), cond (1,80,C), time_cond (1,) int64) -> (pred_noise, x_start)
LMDMCall = Callable[[np.ndarray, np.ndarray, np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]
KEEP_ROWS = 160  # Ditto trims its rolling buffers to 2 windows


@dataclass(frozen=True)
class MotionSettings:
    seq_frames: int = 80
    overlap: int = 70
    steps: int = 10
    smooth_k: int = 3
    fix_kp_cond: int = 1  # reset the motion condition to the source's every n windows (0: never)
    fix_kp_cond_dims: tuple[int, int] | None = (0, POSE_DIMS)  # kept from the last frame on a reset
    online: bool = True
    emit_first_window: bool = False  # online: send window 0's last V frames at once, uncrossfaded (ours)

    def __post_init__(self) -> None:
        if self.online and not self.seq_frames // 2 <= self.overlap < self.seq_frames:
            # Below half a window Ditto's online loop silently drops frames (reference §5.6).
            raise ValueError(
                f"overlap must be in {self.seq_frames // 2}..{self.seq_frames - 1} for streaming, got {self.overlap}"
            )
        if not self.online and not 1 <= self.overlap < self.seq_frames:
            raise ValueError(f"overlap must be in 1..{self.seq_frames - 1} offline, got {self.overlap}")
        if self.emit_first_window and not self.online:
            raise ValueError("emit_first_window is a streaming (online) setting")

    @property
    def valid(self) -> int:
        return self.seq_frames - self.overlap

    @property
    def fuse(self) -> int:
        return min(self.overlap, self.valid) if self.online else self.overlap


def smooth_pose(rows: np.ndarray, start: int, end: int, k: int) -> None:
    """Centred moving average of width k over rows [start, end), dims [0:202] only, in place."""
    if k <= 1:
        return
    half, n = k // 2, rows.shape[0]
    start, end = max(start, 0), min(end, n)
    lo, hi = max(start - half, 0), min(end + half, n)  # the neighbours the windows of [start, end) reach
    rows[start:end, :POSE_DIMS] = moving_average(rows[lo:hi, :POSE_DIMS], k)[start - lo : end - lo]


class WindowSampler:
    """What both modes share: one LMDM window from its conditions, the fusion of a window into the
    running result, and the per-window update of the motion condition (reference §5.4, §5.5)."""

    def __init__(self, settings: MotionSettings, lmdm: LMDMCall, source_vector: np.ndarray, rng: np.random.Generator):
        self.s = settings
        self._lmdm = lmdm
        self._source = np.asarray(source_vector, np.float32).reshape(1, MOTION_DIM)
        self._sampler = DDIMSampler(settings.steps, (1, settings.seq_frames, MOTION_DIM), rng)
        self._kp_cond = self._source.copy()
        self.windows = 0

    def sample(self, cond: np.ndarray) -> np.ndarray:
        """(80, C) conditions -> (80, 265) generated motion."""
        kp_cond, cond = self._kp_cond.copy(), cond[None]
        return self._sampler.sample(lambda x, t: self._lmdm(x, kp_cond, cond, np.full((1,), t, np.int64)))[0]

    def fuse(self, result: np.ndarray | None, pred: np.ndarray) -> np.ndarray:
        """The running result with window `pred` joined on: crossfade, append, smooth the seam."""
        s = self.s
        if result is None:
            result = pred.copy()
            smooth_pose(result, 0, s.seq_frames, s.smooth_k)
        else:
            alpha = (np.arange(s.fuse, dtype=np.float32) / s.fuse)[:, None]
            lo = s.seq_frames - s.valid - s.fuse
            result[-s.fuse :] = result[-s.fuse :] * (1 - alpha) + pred[lo : lo + s.fuse] * alpha
            result = np.concatenate([result, pred[s.seq_frames - s.valid :]])
            n = result.shape[0]
            smooth_pose(result, n - s.valid - s.fuse, n - s.valid + 1, s.smooth_k)
        self.windows += 1
        self._update_kp_cond(result)
        return result

    def _update_kp_cond(self, result: np.ndarray) -> None:
        prev = result[result.shape[0] - self.s.overlap - 1]
        if self.s.fix_kp_cond > 0 and self.windows % self.s.fix_kp_cond == 0:
            self._kp_cond = self._source.copy()
            if self.s.fix_kp_cond_dims is not None:
                lo, hi = self.s.fix_kp_cond_dims
                self._kp_cond[0, lo:hi] = prev[lo:hi]
        else:
            self._kp_cond = prev[None].copy()


class OfflineMotion:
    """Ditto's offline loop behind the streaming interface: `push` keeps the features, `finish`
    generates the whole clip at once and releases every frame."""

    def __init__(
        self,
        settings: MotionSettings,
        lmdm: LMDMCall,
        conditions: ConditionBuilder,
        source_vector: np.ndarray,
        rng: np.random.Generator,
    ) -> None:
        if settings.online:
            raise ValueError("OfflineMotion needs offline settings (online=False)")
        self.s = settings
        self._windows = WindowSampler(settings, lmdm, source_vector, rng)
        self._conditions = conditions
        self._features: list[np.ndarray] = []
        self.d0: np.ndarray | None = None

    def push(self, features: np.ndarray) -> list[np.ndarray]:
        if features.size:
            self._features.append(np.asarray(features, np.float32))
        return []

    def finish(self, features: np.ndarray, total_frames: int) -> list[np.ndarray]:
        self.push(features)
        if not self._features:
            return []
        motion = self.generate(np.concatenate(self._features)[:total_frames])
        self._features = []
        if motion.shape[0]:
            self.d0 = motion[0].copy()
        return list(motion)

    def generate(self, features: np.ndarray) -> np.ndarray:
        """(n, H) features of the whole clip -> (n, 265) motion, one row per frame."""
        n, s = features.shape[0], self.s
        cond_all = self._conditions(features, 0)
        result = None
        for start in range(0, n, s.valid):
            cond = cond_all[start : start + s.seq_frames]
            if cond.shape[0] < s.seq_frames:
                cond = np.concatenate([cond, np.repeat(cond[-1:], s.seq_frames - cond.shape[0], axis=0)])
            result = self._windows.fuse(result, self._windows.sample(cond))
        if result is None:
            return np.zeros((0, MOTION_DIM), np.float32)
        result = result[:n]
        smooth_pose(result, 0, n, s.smooth_k)
        return result


class OnlineMotion:
    def __init__(
        self,
        settings: MotionSettings,
        lmdm: LMDMCall,
        conditions: ConditionBuilder,
        source_vector: np.ndarray,
        silence_features: np.ndarray,
        rng: np.random.Generator,
    ) -> None:
        if not settings.online:
            raise ValueError("OnlineMotion needs online settings")
        self.s = settings
        self._windows = WindowSampler(settings, lmdm, source_vector, rng)
        self._conditions = conditions
        self._features = np.asarray(silence_features, np.float32)[: settings.overlap]
        if self._features.shape[0] != settings.overlap:
            raise ValueError(f"need {settings.overlap} rows of silence features, got {self._features.shape[0]}")
        self._pending = np.zeros((0, self._features.shape[1]), np.float32)
        self._result: np.ndarray | None = None
        self._release_at = 0  # index in _result of the next frame to release
        self._sent_early = 0  # frames at _release_at already sent by the first window (first_window "emit")
        self._rows_total = settings.overlap  # feature rows so far, the prefill silence included
        self.d0: np.ndarray | None = None  # (265,) the relative-motion reference
        self.released = 0

    def push(self, features: np.ndarray) -> list[np.ndarray]:
        """Add (k, H) features of real audio; return the (265,) motion rows released, in frame order."""
        out = self._consume(features)
        self.released += len(out)
        return out

    def finish(self, features: np.ndarray, total_frames: int) -> list[np.ndarray]:
        """End of stream: add the last features, run the padded last window and release every frame
        up to `total_frames` (frames past the end of the audio are never released)."""
        out = self._consume(features)
        if self._pending.shape[0] or self._result is not None:
            # Ditto's last window: the features left (the overlap and any new rows) padded with the last
            # one, generated and fused like every other, so the final frames are cross-faded too.
            last = self._pending[-1:] if self._pending.shape[0] else self._features[-1:]
            pad = np.repeat(last, self.s.valid - self._pending.shape[0], axis=0)
            out += self._window(np.concatenate([self._pending, pad]))
            self._pending = self._pending[:0]
        if self._result is not None:
            out += self._unsent(self._result[self._release_at :])
            self._release_at = self._result.shape[0]
        out = out[: max(0, total_frames - self.released)]
        self.released += len(out)
        return out

    def _unsent(self, rows: np.ndarray) -> list[np.ndarray]:
        """Copies of `rows` less the frames the first window already sent (first_window "emit")."""
        skip = min(self._sent_early, rows.shape[0])
        self._sent_early -= skip
        return [row.copy() for row in rows[skip:]]

    def _consume(self, features: np.ndarray) -> list[np.ndarray]:
        self._pending = np.concatenate(
            [self._pending, np.asarray(features, np.float32).reshape(-1, self._pending.shape[1])]
        )
        out: list[np.ndarray] = []
        while self._pending.shape[0] >= self.s.valid:
            out += self._window(self._pending[: self.s.valid])
            self._pending = self._pending[self.s.valid :]
        return out

    def _window(self, new_rows: np.ndarray) -> list[np.ndarray]:
        s = self.s
        self._features = np.concatenate([self._features, new_rows])[-KEEP_ROWS:]
        self._rows_total += new_rows.shape[0]
        # frame index of the window's first row (negative while it still covers the prefill silence)
        first_frame = self._rows_total - s.seq_frames - s.overlap
        self._conditions.forget_before(first_frame)
        pred = self._windows.sample(self._conditions(self._features[-s.seq_frames :], first_frame))
        first = self._result is None
        self._result = self._windows.fuse(self._result, pred)
        released: list[np.ndarray] = []
        if first:
            self.d0 = self._result[0].copy()
            self._release_at = s.seq_frames - s.fuse
            if s.emit_first_window:  # a preview of the frames window 1 will release crossfaded
                released = [row.copy() for row in self._result[self._release_at : self._release_at + s.valid]]
                self._sent_early = len(released)
        else:
            released = self._unsent(self._result[self._release_at : self._release_at + s.valid])
            self._release_at += s.valid
        if self._result.shape[0] > KEEP_ROWS:
            cut = self._result.shape[0] - KEEP_ROWS
            self._result = self._result[cut:]
            self._release_at -= cut
        return released
