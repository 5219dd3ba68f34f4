"""The one declaration of Ditto's registration face models: files, tensors and how they are read.

Ditto registers an avatar with InsightFace's SCRFD detector (`det_10g.onnx`), InsightFace's 106-point
landmarks (`2d106det.onnx`), LivePortrait's 203-point landmarks (`landmark203.onnx`) and, for the eye
features, MediaPipe's FaceLandmarker (`face_landmarker.task`) or its ONNX pair `blaze_face.onnx` +
`face_mesh.onnx`. Ditto reads every output by position; the names below are the released files'
(where the files do not pin them down, the export renames the outputs to these by position), so the
Triton configs, the export's checks and the in-process runner agree on one set of names.

A weights directory in the layout of Ditto's `ditto_pytorch/` holds them under `aux_models/`. With
them, registration follows Ditto (`REGISTRATION_DITTO`); without them (synthetic weights), MediaPipe's
legacy solutions find the face (`REGISTRATION_MEDIAPIPE`, this project's path, not Ditto's).
"""

from __future__ import annotations

from dataclasses import dataclass

from ditto_triton.stages import StageSpec, TensorSpec

AUX_DIR = "aux_models"
REGISTRATION_DITTO = "ditto"
REGISTRATION_MEDIAPIPE = "mediapipe"
REGISTRATIONS = (REGISTRATION_DITTO, REGISTRATION_MEDIAPIPE)
EYES_TASK = "task"  # eye landmarks from face_landmarker.task (Ditto's PyTorch configuration)
EYES_ONNX = "onnx"  # eye landmarks from blaze_face.onnx + face_mesh.onnx (Ditto's ONNX/TensorRT configuration)
FACE_LANDMARKER_TASK = f"{AUX_DIR}/face_landmarker.task"

DETECTOR = "face_det_10g"
LANDMARK106 = "face_landmark106"
LANDMARK203 = "face_landmark203"
BLAZE_FACE = "face_blaze_face"
FACE_MESH = "face_mesh"


@dataclass(frozen=True)
class FaceModel:
    """One released face model: its path in the weights directory and its tensors, in the file's order."""

    spec: StageSpec
    release_file: str
    role: str

    @property
    def name(self) -> str:
        return self.spec.name


def _model(name: str, release: str, inputs, outputs, role: str) -> FaceModel:
    spec = StageSpec(
        name=name,
        onnx_file=f"{name}.onnx",
        checkpoint_file=None,
        inputs=tuple(TensorSpec(n, s) for n, s in inputs),
        outputs=tuple(TensorSpec(n, s) for n, s in outputs),
        batch_dynamic=False,
        per_frame=False,
        description=role,
    )
    return FaceModel(spec, f"{AUX_DIR}/{release}", role)


def _scrfd_outputs() -> list[tuple[str, tuple[int, ...]]]:
    """Scores, then boxes, then keypoints, each for strides 8, 16, 32 (2 anchors per cell of 512/s)."""
    rows = [(512 // s) ** 2 * 2 for s in DETECTOR_STRIDES]
    names = ("448", "471", "494", "451", "474", "497", "454", "477", "500")
    widths = (1, 1, 1, 4, 4, 4, 10, 10, 10)
    return [(n, (rows[i % 3], w)) for i, (n, w) in enumerate(zip(names, widths))]


DETECTOR_SIZE = 512
DETECTOR_STRIDES = (8, 16, 32)
DETECTOR_ANCHORS = 2
LANDMARK106_SIZE = 192
LANDMARK203_SIZE = 224
BLAZE_SIZE = 128
BLAZE_ANCHORS = 896
MESH_SIZE = 256

FACE_MODELS: dict[str, FaceModel] = {
    m.name: m
    for m in (
        _model(
            DETECTOR,
            "det_10g.onnx",
            [("input.1", (1, 3, DETECTOR_SIZE, DETECTOR_SIZE))],
            _scrfd_outputs(),
            "InsightFace SCRFD-10G: letterboxed BGR image -> face scores, boxes, 5 keypoints per anchor",
        ),
        _model(
            LANDMARK106,
            "2d106det.onnx",
            [("data", (1, 3, LANDMARK106_SIZE, LANDMARK106_SIZE))],
            [("fc1", (1, 212))],
            "InsightFace 106 landmarks: 192 crop around the box, BGR 0..255 -> 106 (x, y) in [-1, 1]",
        ),
        _model(
            LANDMARK203,
            "landmark203.onnx",
            [("input", (1, 3, LANDMARK203_SIZE, LANDMARK203_SIZE))],
            [("output", (1, 214)), ("853", (1, 262)), ("856", (1, 406))],
            "LivePortrait 203 landmarks: 224 crop, RGB / 255 -> third output 203 (x, y) in [0, 1]",
        ),
        _model(
            BLAZE_FACE,
            "blaze_face.onnx",
            [("input", (1, BLAZE_SIZE, BLAZE_SIZE, 3))],
            [("regressors", (1, BLAZE_ANCHORS, 16)), ("classificators", (1, BLAZE_ANCHORS, 1))],
            "MediaPipe BlazeFace (short range): 512 crop at 128, NHWC RGB / 127.5 - 1 -> boxes, eye keypoints",
        ),
        _model(
            FACE_MESH,
            "face_mesh.onnx",
            [("input", (1, MESH_SIZE, MESH_SIZE, 3))],
            [("Identity", (1, 1, 1, 1434)), ("Identity_1", (1, 1, 1, 1)), ("Identity_2", (1, 1, 1, 1))],
            "MediaPipe FaceMesh with irises: rotated ROI at 256, NHWC RGB / 255 -> 478 (x, y, z)",
        ),
    )
}
CROP_MODELS = (DETECTOR, LANDMARK106, LANDMARK203)
EYE_ONNX_MODELS = (BLAZE_FACE, FACE_MESH)


def models_for(eyes: str) -> tuple[str, ...]:
    """The ONNX face models registration needs with eye landmarks from `eyes` (EYES_TASK or EYES_ONNX)."""
    if eyes not in (EYES_TASK, EYES_ONNX):
        raise ValueError(f"eyes must be {EYES_TASK!r} or {EYES_ONNX!r}, got {eyes!r}")
    return CROP_MODELS + (EYE_ONNX_MODELS if eyes == EYES_ONNX else ())
