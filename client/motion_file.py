"""Motion files (`ditto-render --motion-out` / `--motion-in`): a session's motion, saved to render again.

Per frame: the generated 265-d motion row in Ditto's layout (as the stitching got it, clipped), the source
and driving keypoints after stitching (21 x 3 each) and the controls applied (JSON); once: d0, the session
options (JSON) and the frame rate. Rendering a file back sends its rows to a motion session (option
`motion_d0`, no audio, no LMDM) with the same options and controls, so on the same avatar the frames are
the original run's; on another avatar the same motion drives that face. An uncompressed .npz of plain
arrays (no pickle), versioned like avatar files.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ditto_triton.npz_files import read_npz
from ditto_triton.protocol import FPS, MOTION_DIM, BadRequest

FORMAT = "ditto-triton-motion"
VERSION = 1
KEYS = ("format", "version", "fps", "options", "d0", "motion", "x_s", "x_d", "controls")
NOT_REPLAYED = ("return_motion", "motion_d0")  # session options a replay sets itself


class MotionFileError(BadRequest):
    """Not a motion file, another version, or arrays of the wrong shape."""


@dataclass(frozen=True, eq=False)
class MotionFile:
    motion: np.ndarray  # (n, 265)
    x_s: np.ndarray  # (n, 21, 3)
    x_d: np.ndarray  # (n, 21, 3)
    controls: list[dict[str, Any]]  # per frame
    d0: np.ndarray  # (265,)
    options: dict[str, Any]  # the session options of the run

    @property
    def frames(self) -> int:
        return self.motion.shape[0]

    def replay_options(self, **extra: Any) -> dict[str, Any]:
        """The run's options for a motion session that renders this file."""
        kept = {k: v for k, v in self.options.items() if k not in NOT_REPLAYED}
        return {**kept, **extra, "motion_d0": self.d0.tolist()}

    def replay_controls(self) -> list[dict[str, Any]]:
        """The controls applied, as per-frame control entries."""
        return [{"frame": i, **c} for i, c in enumerate(self.controls) if c]

    def save(self, path: Path) -> None:
        arrays = {
            "format": np.array(FORMAT),
            "version": np.array(VERSION),
            "fps": np.array(FPS),
            "options": np.array(json.dumps(self.options)),
            "d0": np.asarray(self.d0, np.float32),
            "motion": np.asarray(self.motion, np.float32),
            "x_s": np.asarray(self.x_s, np.float32),
            "x_d": np.asarray(self.x_d, np.float32),
            "controls": np.array([json.dumps(c) for c in self.controls]),
        }
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        with open(path, "wb") as fh:
            np.savez(fh, **arrays)

    @classmethod
    def load(cls, data: bytes | Path) -> MotionFile:
        arrays = read_npz(data, MotionFileError, "a motion file (an .npz written by ditto-render --motion-out)")
        if str(arrays.get("format", "")) != FORMAT or sorted(arrays) != sorted(KEYS):
            raise MotionFileError(f"not a motion file: expected the keys {list(KEYS)}, format {FORMAT!r}")
        if int(arrays["version"]) != VERSION:
            raise MotionFileError(f"motion file version {int(arrays['version'])}: this version reads {VERSION}")
        n = arrays["motion"].shape[0] if arrays["motion"].ndim == 2 else -1
        shapes = {
            "motion": (n, MOTION_DIM),
            "x_s": (n, 21, 3),
            "x_d": (n, 21, 3),
            "d0": (MOTION_DIM,),
            "controls": (n,),
        }
        for key, shape in shapes.items():
            if arrays[key].shape != shape or n < 1:
                raise MotionFileError(f"motion file: {key!r} has shape {arrays[key].shape}, expected {shape} (n >= 1)")
        return cls(
            motion=arrays["motion"],
            x_s=arrays["x_s"],
            x_d=arrays["x_d"],
            controls=[json.loads(str(c)) for c in arrays["controls"]],
            d0=arrays["d0"],
            options=json.loads(str(arrays["options"])),
        )


def motion_file_from(records: list[Any], options: dict[str, Any]) -> MotionFile:
    """From frames' motion records (objects or dicts with row, x_s, x_d, controls, d0), in frame order."""

    def get(record, name):
        return record[name] if isinstance(record, dict) else getattr(record, name)

    if not records:
        raise ValueError("no frames carried motion (was the session opened with return_motion?)")
    return MotionFile(
        motion=np.stack([np.asarray(get(r, "row"), np.float32).reshape(MOTION_DIM) for r in records]),
        x_s=np.stack([np.asarray(get(r, "x_s"), np.float32).reshape(21, 3) for r in records]),
        x_d=np.stack([np.asarray(get(r, "x_d"), np.float32).reshape(21, 3) for r in records]),
        controls=[dict(get(r, "controls")) for r in records],
        d0=np.asarray(get(records[0], "d0"), np.float32).reshape(MOTION_DIM),
        options=dict(options),
    )
