"""ONNX Runtime stages that keep what every LMDM call was given and returned (tests of what the
motion model sees: conditions, guidance weights, the windows it sampled)."""

from __future__ import annotations

import numpy as np

from ditto_triton.export.ort_runtime import OrtStages


class RecordingStages(OrtStages):
    def __init__(self, export_dir):
        super().__init__(export_dir)
        self.conds: list[np.ndarray] = []  # (1, 80, C) each
        self.weights: list[np.ndarray] = []  # (1,) each
        self.x_starts: list[np.ndarray] = []  # (80, 265) each

    def infer(self, name, inputs):
        out = super().infer(name, inputs)
        if name == "lmdm":
            self.conds.append(inputs["cond"].copy())
            self.weights.append(inputs["guidance_weight"].copy())
            self.x_starts.append(out["x_start"][0].copy())
        return out

    def clear(self) -> None:
        self.conds.clear()
        self.weights.clear()
        self.x_starts.clear()

    def windows(self, steps: int) -> list[np.ndarray]:
        """Each LMDM window's final x0: the last of its `steps` calls."""
        return self.x_starts[steps - 1 :: steps]

    def window_conds(self) -> list[np.ndarray]:
        """The condition of each LMDM window (every call of a window gets the same one)."""
        return [c for i, c in enumerate(self.conds) if i == 0 or not np.array_equal(c, self.conds[i - 1])]
