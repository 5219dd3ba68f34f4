"""Ditto's released face models: found in a weights directory, checked, conformed and run in process.

`import_face_models` reads `aux_models/` of a `ditto_pytorch/`-layout directory: the three crop models
and the eye landmarks (`face_landmarker.task`, else the `blaze_face.onnx` + `face_mesh.onnx` pair).
Each ONNX file is checked by position against `ditto_triton.face_models` (input count, output count,
fixed dims, element counts) and written into the export with the declared names and shapes (a
rename, or a Reshape where the file's output shape differs but its size does not), so Triton's
configs and every runner use one set of names while the networks stay the released ones.
"""

from __future__ import annotations

import math
import shutil
import threading
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import helper, numpy_helper

from ditto_triton.avatar.ditto_registration import DittoFaces
from ditto_triton.export.ort_runtime import ort_session
from ditto_triton.face_models import (
    AUX_DIR,
    EYES_ONNX,
    EYES_TASK,
    FACE_LANDMARKER_TASK,
    FACE_MODELS,
    REGISTRATION_DITTO,
    models_for,
)
from ditto_triton.manifest import sha256_file
from ditto_triton.stages import StageSpec

TASK_FILE = Path(FACE_LANDMARKER_TASK).name


class FaceModelError(ValueError):
    """A face model file is missing or does not have the released file's inputs and outputs."""


def eyes_in(weights_dir: Path) -> str | None:
    """Which eye-landmark path `weights_dir/aux_models` supports (task preferred, as Ditto's PyTorch
    configuration), or None when it holds no face models at all.

    Raises:
        FaceModelError: some face models are there but not all that registration needs.
    """
    aux = Path(weights_dir) / AUX_DIR
    present = {name for name, m in FACE_MODELS.items() if (Path(weights_dir) / m.release_file).is_file()}
    has_task = (aux / TASK_FILE).is_file()
    if not present and not has_task:
        return None
    eyes = EYES_TASK if has_task else EYES_ONNX
    missing = [FACE_MODELS[n].release_file for n in models_for(eyes) if n not in present]
    if missing:
        raise FaceModelError(
            f"{weights_dir}: Ditto's registration needs {', '.join(missing)} (copy aux_models/ from Ditto's "
            "ditto_pytorch release); with none of the face models the MediaPipe path is used instead"
        )
    return eyes


def import_face_models(weights_dir: Path, out_dir: Path) -> dict[str, Any] | None:
    """Check and copy the face models into `out_dir`; the manifest's `registration` entry, or None."""
    eyes = eyes_in(weights_dir)
    if eyes is None:
        return None
    models = {}
    for name in models_for(eyes):
        source = Path(weights_dir) / FACE_MODELS[name].release_file
        target = Path(out_dir) / FACE_MODELS[name].spec.onnx_file
        changes = conform(source, FACE_MODELS[name].spec, target)
        models[name] = {"file": target.name, "source": str(source), "sha256": sha256_file(source), "conformed": changes}
    entry: dict[str, Any] = {"kind": REGISTRATION_DITTO, "eyes": eyes, "models": models}
    if eyes == EYES_TASK:
        task = Path(weights_dir) / FACE_LANDMARKER_TASK
        shutil.copy2(task, Path(out_dir) / TASK_FILE)
        entry["task_file"] = TASK_FILE
        entry["task_sha256"] = sha256_file(task)
    return entry


def conform(source: Path, spec: StageSpec, target: Path) -> list[str]:
    """Write `source` to `target` with `spec`'s tensor names and shapes; returns what was changed."""
    try:
        model = onnx.load(str(source))
    except Exception as exc:  # noqa: BLE001 - protobuf raises DecodeError and others
        raise FaceModelError(f"{source}: not an ONNX model ({exc})") from None
    graph = model.graph
    inputs = [i for i in graph.input if i.name not in {t.name for t in graph.initializer}]
    _check_counts(source, spec, len(inputs), len(graph.output))
    changes = []
    _check_dims(source, "input", inputs[0], spec.inputs[0].shape, exact=True)
    if inputs[0].name != spec.inputs[0].name:
        changes.append(f"input {inputs[0].name!r} -> {spec.inputs[0].name!r}")
        _rename(graph, inputs[0].name, spec.inputs[0].name)
    for index, (output, wanted) in enumerate(zip(list(graph.output), spec.outputs)):
        dims = _check_dims(source, f"output {index}", output, wanted.shape, exact=False)
        if output.name != wanted.name or dims != list(wanted.shape):
            changes.append(f"output {index} {output.name!r} {dims} -> {wanted.name!r} {list(wanted.shape)}")
            _reshape_output(graph, index, wanted.name, wanted.shape)
    target.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(target))
    return changes


def _check_counts(source: Path, spec: StageSpec, inputs: int, outputs: int) -> None:
    if inputs != len(spec.inputs) or outputs != len(spec.outputs):
        wanted = ", ".join(f"{t.name} {list(t.shape)}" for t in spec.outputs)
        raise FaceModelError(
            f"{source}: expected {len(spec.inputs)} input and {len(spec.outputs)} outputs ({wanted}), "
            f"found {inputs} input(s) and {outputs} output(s)"
        )


def _check_dims(source: Path, what: str, value: onnx.ValueInfoProto, wanted: tuple, exact: bool) -> list:
    """The file's dims (None where symbolic); a fixed dim must equal the wanted one (`exact`), or the
    fixed element count must equal the wanted one."""
    dims = [d.dim_value if d.HasField("dim_value") else None for d in value.type.tensor_type.shape.dim]
    if exact:
        ok = len(dims) == len(wanted) and all(d is None or d == w for d, w in zip(dims, wanted))
    else:
        ok = None in dims or math.prod(dims) == math.prod(wanted)
    if not ok:
        raise FaceModelError(f"{source}: {what} {value.name!r} has shape {dims}, expected {list(wanted)}")
    return dims


def _rename(graph: onnx.GraphProto, old: str, new: str) -> None:
    for value in (*graph.input, *graph.output, *graph.value_info):
        if value.name == old:
            value.name = new
    for node in graph.node:
        node.input[:] = [new if n == old else n for n in node.input]
        node.output[:] = [new if n == old else n for n in node.output]


def _reshape_output(graph: onnx.GraphProto, index: int, name: str, shape: tuple) -> None:
    """Route output `index` through a Reshape to `name` with `shape`."""
    raw = graph.output[index].name
    if raw == name:
        _rename(graph, raw, f"{name}__released")
        raw = f"{name}__released"
    shape_name = f"{name}__shape"
    graph.initializer.append(numpy_helper.from_array(np.array(shape, np.int64), shape_name))
    graph.node.append(helper.make_node("Reshape", [raw, shape_name], [name]))
    elem = graph.output[index].type.tensor_type.elem_type
    graph.output.remove(graph.output[index])
    graph.output.insert(index, helper.make_tensor_value_info(name, elem, list(shape)))


class OrtFaceModels:
    """The export's face models on ONNX Runtime (CPU) in this process; `infer` as `DittoFaces` wants."""

    def __init__(self, export_dir: Path, entry: dict[str, Any], threads: int = 2) -> None:
        self._sessions = {
            name: ort_session(Path(export_dir) / model["file"], threads, flush_denormals=False)
            for name, model in entry["models"].items()
        }
        self._locks = {name: threading.Lock() for name in self._sessions}

    def infer(self, name: str, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        with self._locks[name]:
            outputs = self._sessions[name].run(FACE_MODELS[name].spec.output_names, inputs)
        return dict(zip(FACE_MODELS[name].spec.output_names, outputs))


def ditto_faces(export_dir: Path, entry: dict[str, Any] | None) -> DittoFaces | None:
    """Ditto's registration for an export whose manifest has a face-model `entry`, else None."""
    if entry is None:
        return None
    task = Path(export_dir) / entry["task_file"] if entry["eyes"] == EYES_TASK else None
    return DittoFaces(OrtFaceModels(export_dir, entry).infer, entry["eyes"], task)


def export_faces(export_dir: Path) -> DittoFaces | None:
    """`ditto_faces` for the export in `export_dir` (None: its registration is MediaPipe's)."""
    from ditto_triton.manifest import read_manifest

    return ditto_faces(export_dir, read_manifest(export_dir).get("registration"))
