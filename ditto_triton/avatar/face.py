"""Face detection and 478-point landmarks with MediaPipe (BlazeFace + FaceMesh with irises).

Ditto finds the face with InsightFace + landmark106/203 and takes the eye landmarks from MediaPipe's
478-point mesh (architecture reference, sections 3.8 and 7.2). Here MediaPipe does all of it:

1. BlazeFace decides whether there is a face: the short-range model first (portraits, faces filling
   a good part of the frame), the full-range model when it finds nothing (smaller faces). The
   largest detection is the face (Ditto keeps the largest InsightFace box too).
2. FaceMesh (static images, refined irises, up to `MAX_MESH_FACES` faces) runs on the whole image;
   the mesh whose bounding box overlaps that detection best is taken. FaceMesh runs its own
   short-range detector, which misses small faces in large photos; if no mesh matches, FaceMesh runs
   again on a square region around the detection.

The MediaPipe graphs are created once per process on first use, shared by all threads and used
under one lock (they are not re-entrant); `close_face_models` releases them. mediapipe is imported
only then, so importing this module is cheap.
"""

from __future__ import annotations

import logging
import os
import threading
from dataclasses import dataclass
from typing import Any

import numpy as np

from ditto_triton.avatar.errors import NoFaceError

logger = logging.getLogger(__name__)

MESH_POINTS = 478
MAX_MESH_FACES = 4
MIN_DETECTION_CONFIDENCE = 0.5
# A mesh belongs to a detection when their boxes overlap at least this much (intersection over union).
# BlazeFace's box spans brows to chin, the mesh's forehead to chin: a true match is typically > 0.6.
MIN_BOX_IOU = 0.3
# The fallback FaceMesh region is the detection box grown by this factor (square, centred).
REGION_SCALE = 2.5


@dataclass(frozen=True)
class FaceBox:
    """An axis-aligned face box in pixels, (x0, y0) top-left, (x1, y1) bottom-right."""

    x0: float
    y0: float
    x1: float
    y1: float
    score: float = 1.0

    @property
    def area(self) -> float:
        return max(self.x1 - self.x0, 0.0) * max(self.y1 - self.y0, 0.0)

    def iou(self, other: FaceBox) -> float:
        """Intersection over union with `other` (0 when they do not overlap)."""
        ix = min(self.x1, other.x1) - max(self.x0, other.x0)
        iy = min(self.y1, other.y1) - max(self.y0, other.y0)
        if ix <= 0 or iy <= 0:
            return 0.0
        inter = ix * iy
        return inter / (self.area + other.area - inter)

    @staticmethod
    def around(points: np.ndarray, score: float = 1.0) -> FaceBox:
        """The bounding box of (N, >=2) pixel points."""
        x0, y0 = points[:, :2].min(axis=0)
        x1, y1 = points[:, :2].max(axis=0)
        return FaceBox(float(x0), float(y0), float(x1), float(y1), score)


@dataclass(frozen=True, eq=False)
class FaceLandmarks:
    """478 FaceMesh landmarks of one face (468 mesh points + 5 per iris, 468 and 473 the centres).

    Attributes:
        px: (478, 3) float32; x, y in pixels of the analysed image, z in pixels on the x scale
            (MediaPipe's z is relative depth normalised by the image width; smaller = closer).
        normalised: (478, 3) float32; x / W, y / H, z as MediaPipe reports it (z_px / W). This is the
            form Ditto's eye features use.
        detection: the BlazeFace box the mesh was matched to.
    """

    px: np.ndarray
    normalised: np.ndarray
    detection: FaceBox


def detect_faces(rgb: np.ndarray) -> list[FaceBox]:
    """All BlazeFace detections in pixels, largest first (empty when there is no face).

    Args:
        rgb: (H, W, 3) uint8 RGB.
    """
    _check_rgb(rgb)
    with _LOCK:
        models = _models()
        for detector in (models.short_range, models.full_range):
            boxes = _detections(detector.process(rgb), rgb.shape[1], rgb.shape[0])
            if boxes:
                return sorted(boxes, key=lambda b: b.area, reverse=True)
    return []


def detect_face(rgb: np.ndarray) -> FaceLandmarks:
    """Landmarks of the largest face in `rgb`.

    Args:
        rgb: (H, W, 3) uint8 RGB.

    Raises:
        NoFaceError: BlazeFace found no face, or FaceMesh could not fit the face it found.
    """
    faces = detect_faces(rgb)
    if not faces:
        raise NoFaceError("no face was found in the image")
    landmarks = landmarks_in_box(rgb, faces[0])
    if landmarks is None:
        raise NoFaceError(
            "no face was found in the image: a face-like region was detected but its landmarks could not be located"
        )
    return landmarks


def detect_landmarks(rgb: np.ndarray) -> np.ndarray:
    """(478, 3) float32 pixel-unit landmarks of the largest face (see `FaceLandmarks.px`)."""
    return detect_face(rgb).px


def landmarks_in_box(rgb: np.ndarray, box: FaceBox, *, min_iou: float = MIN_BOX_IOU) -> FaceLandmarks | None:
    """FaceMesh landmarks of the face in `box`, or None when no mesh overlaps it by >= `min_iou`.

    Runs FaceMesh on the whole image, then (if nothing matches) on a square region of
    `REGION_SCALE` times the box around it.
    """
    _check_rgb(rgb)
    height, width = rgb.shape[:2]
    best = _best_mesh(_run_mesh(rgb, 0, 0), box, min_iou)
    if best is None:
        x0, y0, x1, y1 = _region(box, width, height)
        if x1 - x0 >= 16 and y1 - y0 >= 16:
            region = np.ascontiguousarray(rgb[y0:y1, x0:x1])
            best = _best_mesh(_run_mesh(region, x0, y0), box, min_iou)
            if best is not None:
                logger.debug("face mesh found in the region around the detection, not the full image")
    if best is None:
        return None
    normalised = best / np.array([width, height, width], dtype=np.float64)
    return FaceLandmarks(px=best.astype(np.float32), normalised=normalised.astype(np.float32), detection=box)


def warm_up_face_models() -> None:
    """Create the graphs and run each once on a grey image, so that the first registration does not
    pay for loading them (about 1.3 s on 2 cores)."""
    grey = np.full((192, 192, 3), 128, np.uint8)
    with _LOCK:
        models = _models()
        for graph in (models.short_range, models.full_range, models.mesh):
            graph.process(grey)


def close_face_models() -> None:
    """Release the cached MediaPipe graphs (they are re-created on next use)."""
    global _MODELS
    with _LOCK:
        if _MODELS is not None:
            _MODELS.close()
            _MODELS = None


# --------------------------------------------------------------------------------------------------
# MediaPipe graphs, one set per process


class _FaceModels:
    def __init__(self) -> None:
        from mediapipe.python.solutions import face_detection, face_mesh

        self.short_range = face_detection.FaceDetection(
            model_selection=0, min_detection_confidence=MIN_DETECTION_CONFIDENCE
        )
        self.full_range = face_detection.FaceDetection(
            model_selection=1, min_detection_confidence=MIN_DETECTION_CONFIDENCE
        )
        self.mesh = face_mesh.FaceMesh(
            static_image_mode=True,
            max_num_faces=MAX_MESH_FACES,
            refine_landmarks=True,
            min_detection_confidence=MIN_DETECTION_CONFIDENCE,
        )

    def close(self) -> None:
        for graph in (self.short_range, self.full_range, self.mesh):
            graph.close()


_LOCK = threading.Lock()
_MODELS: _FaceModels | None = None


def _models() -> _FaceModels:
    """The process's graphs; call with `_LOCK` held."""
    global _MODELS
    if _MODELS is None:
        logger.info("loading MediaPipe face detection and face mesh graphs")
        _MODELS = _FaceModels()
    return _MODELS


def _forget_models_after_fork() -> None:
    # A forked child must not use (or wait on) the parent's graphs and lock; it builds its own.
    global _LOCK, _MODELS
    _LOCK = threading.Lock()
    _MODELS = None


os.register_at_fork(after_in_child=_forget_models_after_fork)


# --------------------------------------------------------------------------------------------------
# helpers


def _check_rgb(rgb: np.ndarray) -> None:
    if not isinstance(rgb, np.ndarray) or rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
        got = f"shape {rgb.shape} dtype {rgb.dtype}" if isinstance(rgb, np.ndarray) else type(rgb).__name__
        raise ValueError(f"expected an (H, W, 3) uint8 RGB image, got {got}")
    if not rgb.flags.c_contiguous:
        raise ValueError("the image array must be C-contiguous (use np.ascontiguousarray)")


def _detections(result: Any, width: int, height: int) -> list[FaceBox]:
    boxes = []
    for det in result.detections or []:
        rel = det.location_data.relative_bounding_box
        x0, y0 = rel.xmin * width, rel.ymin * height
        boxes.append(FaceBox(x0, y0, x0 + rel.width * width, y0 + rel.height * height, float(det.score[0])))
    return boxes


def _run_mesh(rgb: np.ndarray, offset_x: int, offset_y: int) -> list[np.ndarray]:
    """(478, 3) float64 pixel landmarks of every face FaceMesh finds, shifted by the offset."""
    height, width = rgb.shape[:2]
    with _LOCK:
        result = _models().mesh.process(rgb)
    meshes = []
    for face in result.multi_face_landmarks or []:
        pts = np.array([(p.x, p.y, p.z) for p in face.landmark], dtype=np.float64)
        if pts.shape != (MESH_POINTS, 3):
            raise RuntimeError(f"FaceMesh returned {pts.shape[0]} landmarks, expected {MESH_POINTS}")
        pts *= (width, height, width)
        pts[:, 0] += offset_x
        pts[:, 1] += offset_y
        meshes.append(pts)
    return meshes


def _best_mesh(meshes: list[np.ndarray], box: FaceBox, min_iou: float) -> np.ndarray | None:
    scored = [(FaceBox.around(m).iou(box), i) for i, m in enumerate(meshes)]
    scored = [s for s in scored if s[0] >= min_iou]
    if not scored:
        return None
    return meshes[max(scored)[1]]


def _region(box: FaceBox, width: int, height: int) -> tuple[int, int, int, int]:
    side = REGION_SCALE * max(box.x1 - box.x0, box.y1 - box.y0)
    cx, cy = (box.x0 + box.x1) / 2, (box.y0 + box.y1) / 2
    x0, y0 = int(max(cx - side / 2, 0)), int(max(cy - side / 2, 0))
    x1, y1 = int(min(cx + side / 2, width)), int(min(cy + side / 2, height))
    return x0, y0, x1, y1
