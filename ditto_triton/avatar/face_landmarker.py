"""Ditto's eye landmarks from `face_landmarker.task` (its PyTorch configuration, aux-models §0, §7):
MediaPipe Tasks' FaceLandmarker on the RGB 512 crop, one face, landmarks normalised to [0, 1].
Ditto also asks for blendshapes and transformation matrices (unused); they are asked for here when
the bundle carries their files (the released one does), which leaves the landmarks unchanged.

One landmarker per task file and process, used under a lock (the graph is not re-entrant).
"""

from __future__ import annotations

import threading
import zipfile
from pathlib import Path

import numpy as np

from ditto_triton.avatar.errors import NoFaceError

_LOCK = threading.Lock()
_LANDMARKERS: dict[str, object] = {}


def _landmarker(task_file: Path):
    key = str(Path(task_file).resolve())
    if key not in _LANDMARKERS:
        from mediapipe.tasks.python import BaseOptions, vision

        options = vision.FaceLandmarkerOptions(
            base_options=BaseOptions(model_asset_path=key),
            output_face_blendshapes=_bundle_has(key, "face_blendshapes.tflite"),
            output_facial_transformation_matrixes=_bundle_has(key, "geometry_pipeline_metadata_landmarks.binarypb"),
            num_faces=1,
        )
        try:
            _LANDMARKERS[key] = vision.FaceLandmarker.create_from_options(options)
        except Exception as exc:  # noqa: BLE001 - MediaPipe raises RuntimeError/ValueError variously
            raise ValueError(f"{task_file}: not a MediaPipe FaceLandmarker task bundle ({exc})") from None
    return _LANDMARKERS[key]


def _bundle_has(task_file: str, member: str) -> bool:
    try:
        with zipfile.ZipFile(task_file) as bundle:
            return member in bundle.namelist()
    except (OSError, zipfile.BadZipFile):
        return False


def warm_up_landmarker(task_file: Path) -> None:
    """Load the bundle and run it once on a grey crop (the first registration then does not pay for it)."""
    try:
        task_landmarks(np.full((256, 256, 3), 128, np.uint8), task_file)
    except NoFaceError:
        pass


def task_landmarks(crop: np.ndarray, task_file: Path) -> np.ndarray:
    """(478, 3) float32 normalised landmarks of the face in the RGB crop.

    Raises:
        NoFaceError: the landmarker found no face on the crop.
    """
    import mediapipe as mp

    with _LOCK:
        landmarker = _landmarker(task_file)
        image = mp.Image(image_format=mp.ImageFormat.SRGB, data=np.ascontiguousarray(crop))
        result = landmarker.detect(image)
    if not result.face_landmarks:
        raise NoFaceError("no face was found on the 512 crop by face_landmarker.task (eye landmarks)")
    points = np.array([[p.x, p.y, p.z] for p in result.face_landmarks[0]], np.float32)
    if points.shape != (478, 3):
        raise ValueError(f"face_landmarker.task gave {points.shape[0]} landmarks, expected 478")
    return points
