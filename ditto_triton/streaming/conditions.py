"""Per-frame LMDM condition: audio | emotion (8) | eye_open (2) | eye_ball (6) | sc (63) (reference §5.3)."""

from __future__ import annotations

import numpy as np

EMOTIONS = ("angry", "disgust", "fear", "happy", "neutral", "sad", "surprise", "contempt")
NEUTRAL = EMOTIONS.index("neutral")


def emotion_vector(labels: int | list[int]) -> np.ndarray:
    """Ditto's soft one-hot: value 8 at the chosen label(s), softmax over the 8 classes."""
    labels = [labels] if isinstance(labels, int) else list(labels)
    for label in labels:
        if not 0 <= label < len(EMOTIONS):
            raise ValueError(f"emotion label {label} outside 0..{len(EMOTIONS) - 1} ({', '.join(EMOTIONS)})")
    logits = np.zeros(len(EMOTIONS), np.float64)
    logits[labels] = 8.0
    e = np.exp(logits - logits.max())
    return (e / e.sum()).astype(np.float32)


class ConditionBuilder:
    """Concatenates the constant avatar conditions to each frame's audio features."""

    def __init__(self, emotion: int | list[int], eye_open: np.ndarray, eye_ball: np.ndarray, sc: np.ndarray):
        self._static = np.concatenate(
            [
                emotion_vector(emotion),
                np.asarray(eye_open, np.float32).reshape(2),
                np.asarray(eye_ball, np.float32).reshape(6),
                np.asarray(sc, np.float32).reshape(63),
            ]
        )

    def __call__(self, audio_features: np.ndarray) -> np.ndarray:
        """(n, H) audio features -> (n, H + 79) conditions."""
        n = audio_features.shape[0]
        return np.concatenate([audio_features.astype(np.float32), np.tile(self._static, (n, 1))], axis=1)
