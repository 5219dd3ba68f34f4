"""Read an ONNX file's inputs and outputs (no torch needed) and check them against a stage spec."""

from __future__ import annotations

from pathlib import Path

import onnx

from ditto_triton.stages import DYNAMIC, StageSpec


def _dims(value_info: onnx.ValueInfoProto) -> tuple[int, ...]:
    dims = value_info.type.tensor_type.shape.dim
    return tuple(d.dim_value if d.HasField("dim_value") else DYNAMIC for d in dims)


def onnx_io(path: Path) -> tuple[dict[str, tuple[int, ...]], dict[str, tuple[int, ...]]]:
    """(inputs, outputs) of an ONNX file as {name: shape}, -1 for symbolic dims; order kept."""
    model = onnx.load(str(path), load_external_data=False)
    inits = {i.name for i in model.graph.initializer}
    ins = {v.name: _dims(v) for v in model.graph.input if v.name not in inits}
    outs = {v.name: _dims(v) for v in model.graph.output}
    return ins, outs


def check_onnx_io(path: Path, spec: StageSpec) -> None:
    """Raise ValueError if the file's I/O names, order or shapes differ from the spec."""
    ins, outs = onnx_io(path)
    for kind, found, wanted in (("inputs", ins, spec.inputs), ("outputs", outs, spec.outputs)):
        if list(found) != [t.name for t in wanted]:
            raise ValueError(f"{path}: {kind} {list(found)} != spec {[t.name for t in wanted]}")
        for t in wanted:
            if found[t.name] != t.shape:
                raise ValueError(f"{path}: {t.name} has shape {found[t.name]}, spec says {t.shape}")
