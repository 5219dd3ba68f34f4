"""Ditto's registration of one source frame from its released face models (reference §7.2, §7.3).

Frame 0 (or a photo): SCRFD -> the largest box -> 106 points; a later video frame starts from the
previous frame's 203 points instead. Then the 224 crop -> 203 points -> the 512 crop and M_c2o with
the crop options -> eye landmarks on the crop (face_landmarker.task, or BlazeFace + FaceMesh) -> eye
openness and iris features.

The networks run wherever `infer` sends them (ONNX Runtime in this process, or Triton models called
by BLS from the registry): `infer(model, {input: array})` returns {output: array} with the names of
`ditto_triton.face_models`, which is how every output is read by position as Ditto reads it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ditto_triton.avatar import blaze_mesh, ditto_landmarks, scrfd
from ditto_triton.avatar.ditto_crop import crop_image
from ditto_triton.avatar.errors import NoFaceError
from ditto_triton.avatar.eyes import eye_features
from ditto_triton.face_models import (
    BLAZE_FACE,
    DETECTOR,
    EYES_ONNX,
    EYES_TASK,
    FACE_MESH,
    FACE_MODELS,
    LANDMARK106,
    LANDMARK203,
)

FaceInfer = Callable[[str, dict[str, np.ndarray]], dict[str, np.ndarray]]
CROP_SIZE = 512


@dataclass(frozen=True, eq=False)
class RegisteredFrame:
    """What Ditto's registration computes for one source frame before the extractors."""

    crop: np.ndarray  # (512, 512, 3) uint8 RGB
    M_c2o: np.ndarray  # (3, 3) float32
    landmarks: np.ndarray  # (203, 2) float32 image points
    eye_open: np.ndarray  # (1, 2) float32
    eye_ball: np.ndarray  # (1, 6) float32


@dataclass(frozen=True)
class DittoFaces:
    """Ditto's face models behind `infer`; eye landmarks from `eyes` (EYES_TASK needs `task_file`)."""

    infer: FaceInfer
    eyes: str = EYES_ONNX
    task_file: Path | None = None

    def __post_init__(self) -> None:
        if self.eyes not in (EYES_TASK, EYES_ONNX):
            raise ValueError(f"eyes must be {EYES_TASK!r} or {EYES_ONNX!r}, got {self.eyes!r}")
        if self.eyes == EYES_TASK and self.task_file is None:
            raise ValueError("eye landmarks from face_landmarker.task need its path")

    def run(self, model: str, array: np.ndarray) -> list[np.ndarray]:
        """The model's outputs in its declared order."""
        spec = FACE_MODELS[model].spec
        outputs = self.infer(model, {spec.inputs[0].name: array})
        return [outputs[name] for name in spec.output_names]

    def detect(self, rgb: np.ndarray) -> np.ndarray:
        """(106, 2) points of the largest face SCRFD finds."""
        blob, det_scale = scrfd.detector_input(rgb)
        det, _ = scrfd.decode_detections(self.run(DETECTOR, blob), det_scale)
        box = scrfd.largest_face(det)
        if box is None:
            raise NoFaceError("no face was found in the image (det_10g found no box with score >= 0.5)")
        blob, matrix = ditto_landmarks.landmark106_input(rgb, box)
        return ditto_landmarks.landmark106_points(self.run(LANDMARK106, blob), matrix)

    def landmarks203(self, rgb: np.ndarray, seed_points: np.ndarray) -> np.ndarray:
        crop = ditto_landmarks.landmark203_crop(rgb, seed_points)
        outputs = self.run(LANDMARK203, ditto_landmarks.landmark203_input(crop))
        return ditto_landmarks.landmark203_points(outputs, crop)

    def eye_landmarks(self, crop: np.ndarray) -> np.ndarray:
        """(478, 3) float32 landmarks normalised to the crop."""
        if self.eyes == EYES_TASK:
            from ditto_triton.avatar.face_landmarker import task_landmarks

            return task_landmarks(crop, self.task_file)
        detections = blaze_mesh.blaze_detections(self.run(BLAZE_FACE, blaze_mesh.blaze_input(crop)))
        if len(detections) == 0:
            raise NoFaceError("no face was found on the 512 crop by blaze_face (eye landmarks)")
        height, width = crop.shape[:2]
        roi = blaze_mesh.mesh_roi(detections[0], width, height)
        outputs = self.run(FACE_MESH, blaze_mesh.mesh_input(crop, roi))
        return blaze_mesh.mesh_points(outputs, roi, width, height)

    def register_frame(
        self, rgb: np.ndarray, previous: np.ndarray | None, scale: float, vy_ratio: float, rotate: bool
    ) -> RegisteredFrame:
        """One frame; `previous` is the last frame's 203 points (None: detect)."""
        seed = self.detect(rgb) if previous is None else previous
        points = self.landmarks203(rgb, seed)
        crop = crop_image(rgb, points, CROP_SIZE, scale, vy_ratio, rotate)
        eye_open, eye_ball = eye_features(self.eye_landmarks(crop.image))
        return RegisteredFrame(crop.image, crop.M_c2o, points, eye_open, eye_ball)
