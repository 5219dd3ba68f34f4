"""Per-frame LMDM condition: audio | emotion (8) | eye_open (2) | eye_ball (6) | sc (63) (reference §5.3)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

EMOTIONS = ("angry", "disgust", "fear", "happy", "neutral", "sad", "surprise", "contempt")
NEUTRAL = EMOTIONS.index("neutral")


def emotion_vector(labels: int | Sequence[int]) -> np.ndarray:
    """Ditto's soft one-hot: value 8 at the chosen label(s), softmax over the 8 classes."""
    labels = [labels] if isinstance(labels, (int, np.integer)) else list(labels)
    for label in labels:
        if not 0 <= label < len(EMOTIONS):
            raise ValueError(f"emotion label {label} outside 0..{len(EMOTIONS) - 1} ({', '.join(EMOTIONS)})")
    logits = np.zeros(len(EMOTIONS), np.float64)
    logits[labels] = 8.0
    e = np.exp(logits - logits.max())
    return (e / e.sum()).astype(np.float32)


def mirror_index(frames: np.ndarray, size: int) -> np.ndarray:
    """Frame index -> source-video frame, looping back and forth: 0..n-1, n-1..0, 0..n-1, ...
    (negative indices, the prefill silence, map to frame 0)."""
    frames = np.maximum(np.asarray(frames), 0)
    turn, offset = np.divmod(frames, size)
    return np.where(turn % 2 == 0, offset, size - 1 - offset)


class ConditionBuilder:
    """Concatenates each frame's audio features with its emotion, eye and shape conditions.

    `emotion` is a label, a list of labels (mixed), a sequence of those or an (m, 8) array of
    probabilities, one per frame, cycled by
    frame index (frames before the first, i.e. the prefill silence, use the first entry), as Ditto's
    condition handler does. `eye_open` (m, 2) and `eye_ball` (m, 6) hold one row per source frame
    (m = 1 for a photo), mirror-looped over the generated frames for a video avatar;
    `set_eye_open` overrides the eye openness of single frames (the per-frame control)."""

    def __init__(
        self,
        emotion: int | Sequence | np.ndarray,
        eye_open: np.ndarray,
        eye_ball: np.ndarray,
        sc: np.ndarray,
        eye_f0_mode: bool = False,
    ):
        per_frame = isinstance(emotion, (list, tuple)) and bool(emotion) and isinstance(emotion[0], (list, tuple))
        if isinstance(emotion, np.ndarray):
            self._emotions = np.asarray(emotion, np.float32).reshape(-1, len(EMOTIONS))  # Ditto's (m, 8) emo array
        elif per_frame:
            self._emotions = np.stack([emotion_vector(list(e)) for e in emotion])
        else:
            self._emotions = emotion_vector(emotion)[None]
        self._eye_f0_mode = eye_f0_mode
        eye_open = np.asarray(eye_open, np.float32).reshape(-1, 2)
        eye_ball = np.asarray(eye_ball, np.float32).reshape(-1, 6)
        rows = max(eye_open.shape[0], eye_ball.shape[0])  # one row (a photo, or a session option) spans them all
        if {eye_open.shape[0], eye_ball.shape[0]} - {1, rows}:
            raise ValueError(f"eye_open has {eye_open.shape[0]} rows but eye_ball {eye_ball.shape[0]}")
        self._eye_open = np.repeat(eye_open, rows // eye_open.shape[0], axis=0)
        self._eye_ball = np.repeat(eye_ball, rows // eye_ball.shape[0], axis=0)
        self._sc = np.asarray(sc, np.float32).reshape(1, 63)
        self._eye_open_at: dict[int, np.ndarray] = {}

    def emotion_at(self, frames: np.ndarray) -> np.ndarray:
        """(n, 8) emotion conditions of the given frame indices."""
        return self._emotions[np.maximum(frames, 0) % self._emotions.shape[0]]

    def set_eye_open(self, frames: Sequence[int], value: Sequence[float]) -> None:
        """Condition these frames on eye openness `value` ([left, right]) instead of the avatar's."""
        row = np.asarray(value, np.float32).reshape(2)
        for frame in frames:
            self._eye_open_at[frame] = row

    def forget_before(self, frame: int) -> None:
        """Drop eye overrides of frames no later window will cover."""
        for old in [f for f in self._eye_open_at if f < frame]:
            del self._eye_open_at[old]

    def eyes_at(self, frames: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(n, 2) eye openness and (n, 6) iris offsets of the given frame indices."""
        source = np.zeros_like(frames) if self._eye_f0_mode else mirror_index(frames, self._eye_open.shape[0])
        eye_open, eye_ball = self._eye_open[source], self._eye_ball[source]
        for k, frame in enumerate(frames):
            override = self._eye_open_at.get(int(frame))
            if override is not None:
                eye_open[k] = override
        return eye_open, eye_ball

    def __call__(self, audio_features: np.ndarray, first_frame: int = 0) -> np.ndarray:
        """(n, H) audio features of frames first_frame .. first_frame + n - 1 -> (n, H + 79) conditions."""
        n = audio_features.shape[0]
        frames = np.arange(first_frame, first_frame + n)
        eye_open, eye_ball = self.eyes_at(frames)
        sc = np.repeat(self._sc, n, axis=0)
        return np.concatenate(
            [audio_features.astype(np.float32), self.emotion_at(frames), eye_open, eye_ball, sc], axis=1
        )
