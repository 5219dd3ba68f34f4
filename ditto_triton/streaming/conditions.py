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


class ConditionBuilder:
    """Concatenates each frame's audio features with its emotion and the avatar's constant conditions.

    `emotion` is a label, a list of labels (mixed) or a sequence of those, one per frame, cycled by
    frame index (frames before the first, i.e. the prefill silence, use the first entry), as Ditto's
    condition handler does."""

    def __init__(self, emotion: int | Sequence, eye_open: np.ndarray, eye_ball: np.ndarray, sc: np.ndarray):
        per_frame = isinstance(emotion, (list, tuple)) and bool(emotion) and isinstance(emotion[0], (list, tuple))
        self._emotions = np.stack([emotion_vector(list(e)) for e in emotion]) if per_frame else emotion_vector(emotion)[None]
        self._static = np.concatenate(
            [
                np.asarray(eye_open, np.float32).reshape(2),
                np.asarray(eye_ball, np.float32).reshape(6),
                np.asarray(sc, np.float32).reshape(63),
            ]
        )

    def emotion_at(self, frames: np.ndarray) -> np.ndarray:
        """(n, 8) emotion conditions of the given frame indices."""
        return self._emotions[np.maximum(frames, 0) % self._emotions.shape[0]]

    def __call__(self, audio_features: np.ndarray, first_frame: int = 0) -> np.ndarray:
        """(n, H) audio features of frames first_frame .. first_frame + n - 1 -> (n, H + 79) conditions."""
        n = audio_features.shape[0]
        emotions = self.emotion_at(np.arange(first_frame, first_frame + n))
        return np.concatenate([audio_features.astype(np.float32), emotions, np.tile(self._static, (n, 1))], axis=1)
