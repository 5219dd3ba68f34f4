"""Stand-ins for Ditto's released face models, for tests and benchmarks (no real weights are reachable).

Each stand-in has exactly the released file's input and output names, shapes and order
(`ditto_triton.face_models`) and answers with fixed, plausible values: the detector one face at a
given box, the landmark models a face-shaped point set, BlazeFace one face, FaceMesh a mesh with open
eyes. The input still flows into every output (times zero), so runtimes cannot drop it. The
`face_landmarker.task` stand-in bundles the two TFLite models that ship inside the mediapipe wheel
(short-range face detector, face mesh): a real MediaPipe FaceLandmarker, just not the released one.
"""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from ditto_triton.face_models import (
    BLAZE_FACE,
    DETECTOR,
    DETECTOR_ANCHORS,
    DETECTOR_SIZE,
    DETECTOR_STRIDES,
    FACE_LANDMARKER_TASK,
    FACE_MESH,
    FACE_MODELS,
    LANDMARK106,
    LANDMARK203,
)
from ditto_triton.stages import StageSpec


def constant_model(spec: StageSpec, values: dict[str, np.ndarray], input_name: str | None = None) -> onnx.ModelProto:
    """A graph with `spec`'s tensors whose outputs are `values` (+ 0 x the input's mean)."""
    inp = spec.inputs[0]
    name = input_name or inp.name
    nodes = [
        helper.make_node("ReduceMean", [name], ["mean"], keepdims=0),
        helper.make_node("Mul", ["mean", "zero"], ["nothing"]),
    ]
    inits = [numpy_helper.from_array(np.zeros((), np.float32), "zero")]
    for out in spec.outputs:
        inits.append(
            numpy_helper.from_array(np.asarray(values[out.name], np.float32).reshape(out.shape), f"{out.name}__value")
        )
        nodes.append(helper.make_node("Add", [f"{out.name}__value", "nothing"], [out.name]))
    graph = helper.make_graph(
        nodes,
        spec.name,
        [helper.make_tensor_value_info(name, TensorProto.FLOAT, list(inp.shape))],
        [helper.make_tensor_value_info(o.name, TensorProto.FLOAT, list(o.shape)) for o in spec.outputs],
        inits,
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)


def detector_values(box: tuple[float, float, float, float], score: float = 0.9) -> dict[str, np.ndarray]:
    """Outputs of a detector that sees one face at `box` (x1, y1, x2, y2 in the 512 letterbox): the
    stride-32 anchor nearest the box centre scores `score`, every other anchor 0."""
    spec = FACE_MODELS[DETECTOR].spec
    values = {o.name: np.zeros(o.shape, np.float32) for o in spec.outputs}
    stride, level = DETECTOR_STRIDES[-1], len(DETECTOR_STRIDES) - 1
    cells = DETECTOR_SIZE // stride
    cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
    col, row = min(int(round(cx / stride)), cells - 1), min(int(round(cy / stride)), cells - 1)
    anchor = (row * cells + col) * DETECTOR_ANCHORS
    ax, ay = col * stride, row * stride
    names = [o.name for o in spec.outputs]
    values[names[level]][anchor, 0] = score
    values[names[3 + level]][anchor] = np.array([ax - box[0], ay - box[1], box[2] - ax, box[3] - ay]) / stride
    return values


def _face_points(n: int, eyes: dict[int, tuple[float, float]], rng: np.random.Generator) -> np.ndarray:
    """n points on a face-sized ellipse in [0, 1]^2, with the listed indices placed exactly."""
    angles = rng.uniform(0, 2 * np.pi, n)
    radius = np.sqrt(rng.uniform(0.1, 1.0, n))
    pts = np.stack([0.5 + 0.3 * radius * np.cos(angles), 0.55 + 0.38 * radius * np.sin(angles)], axis=1)
    for index, point in eyes.items():
        pts[index] = point
    return pts.astype(np.float32)


def _roll(degrees: float) -> np.ndarray:
    a = np.radians(degrees)
    return np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])


def landmark106_values(roll_degrees: float = 0.0) -> dict[str, np.ndarray]:
    placed = {i: (0.35, 0.42) for i in (33, 35, 40, 39)} | {i: (0.65, 0.42) for i in (87, 89, 94, 93)}
    placed |= {52: (0.45, 0.72), 61: (0.55, 0.72)}
    pts = _face_points(106, placed, np.random.default_rng(106)) * 2 - 1
    if roll_degrees:
        pts = pts.reshape(106, 2) @ _roll(roll_degrees).T
    return {"fc1": pts.reshape(1, 212)}


def landmark203_values(roll_degrees: float = 0.0) -> dict[str, np.ndarray]:
    placed = {i: (0.36, 0.45) for i in (0, 6, 12, 18)} | {i: (0.64, 0.45) for i in (24, 30, 36, 42)}
    placed |= {48: (0.45, 0.72), 66: (0.55, 0.72)}
    pts = _face_points(203, placed, np.random.default_rng(203))
    if roll_degrees:
        pts = (pts.reshape(203, 2) - 0.5) @ _roll(roll_degrees).T + 0.5
    return {"output": np.zeros((1, 214)), "853": np.zeros((1, 262)), "856": pts.reshape(1, 406)}


def blaze_values(eye_tilt: float = 0.0) -> dict[str, np.ndarray]:
    """One face filling the middle of the crop, eyes level: anchor 528 (layer 2, cell (4, 3))."""
    regressors = np.zeros((1, 896, 16), np.float32)
    logits = np.full((1, 896, 1), -10.0, np.float32)
    anchor, (ax, ay) = 512 + (3 * 8 + 4) * 6, ((4 + 0.5) / 8, (3 + 0.5) / 8)
    regressors[0, anchor, :4] = [(0.5 - ax) * 128, (0.5 - ay) * 128, 56, 56]
    regressors[0, anchor, 4:8] = [(0.4 - ax) * 128, (0.45 - ay) * 128, (0.6 - ax) * 128, (0.45 - ay) * 128]
    regressors[0, anchor, 7] += eye_tilt  # the right eye lower by this many 128-px units: a rolled ROI
    logits[0, anchor, 0] = 5.0
    return {"regressors": regressors, "classificators": logits}


def mesh_values() -> dict[str, np.ndarray]:
    """478 points in 256-px units with open eyes and centred irises."""
    rng = np.random.default_rng(478)
    pts = np.concatenate([rng.uniform(64, 192, (478, 2)), rng.uniform(-5, 5, (478, 1))], axis=1)
    for (outer, inner, lids, iris), x0 in (
        ((33, 133, ((145, 159), (144, 160), (153, 158)), 468), 80),
        ((263, 362, ((374, 386), (373, 387), (380, 385)), 473), 150),
    ):
        pts[outer], pts[inner] = (x0, 110, 0), (x0 + 30, 110, 0)
        for k, (low, high) in enumerate(lids):
            pts[low], pts[high] = (x0 + 8 + 7 * k, 117, 0), (x0 + 8 + 7 * k, 103, 0)
        pts[iris] = (x0 + 16, 109, -1)
    return {
        "Identity": pts.reshape(1, 1, 1, 1434),
        "Identity_1": np.ones((1, 1, 1, 1)),
        "Identity_2": np.ones((1, 1, 1, 1)),
    }


def write_task_standin(path: Path) -> Path:
    """A FaceLandmarker bundle from the mediapipe wheel's own face detector and face mesh models."""
    import mediapipe

    modules = Path(mediapipe.__file__).parent / "modules"
    path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_STORED) as bundle:
        bundle.write(modules / "face_detection" / "face_detection_short_range.tflite", "face_detector.tflite")
        bundle.write(modules / "face_landmark" / "face_landmark.tflite", "face_landmarks_detector.tflite")
    return path


def write_standin_release(
    root: Path, box: tuple[float, float, float, float], task: bool = False, roll_degrees: float = 0.0
) -> Path:
    """`root/aux_models/` with stand-ins of every face model (and `face_landmarker.task` if `task`);
    the detector finds one face at `box` in the 512 letterbox; `roll_degrees` tilts the landmark
    patterns (and BlazeFace's eyes), so the crops are de-rolled."""
    values = {
        DETECTOR: detector_values(box),
        LANDMARK106: landmark106_values(roll_degrees),
        LANDMARK203: landmark203_values(roll_degrees),
        BLAZE_FACE: blaze_values(9.0 if roll_degrees else 0.0),
        FACE_MESH: mesh_values(),
    }
    for name, outputs in values.items():
        model = FACE_MODELS[name]
        path = root / model.release_file
        path.parent.mkdir(parents=True, exist_ok=True)
        onnx.save(constant_model(model.spec, outputs), str(path))
    if task:
        write_task_standin(root / FACE_LANDMARKER_TASK)
    return root
