"""Export one stage module to ONNX with the names, dynamic axes and opset the stage spec asks for."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import onnx
import torch
from torch import nn

from ditto_triton.stages import DYNAMIC, StageSpec

# GridSample on 5-D volumes (the warp network) exists from opset 20 on.
OPSET = 20


def dynamic_axes(spec: StageSpec) -> dict[str, dict[int, str]]:
    axes: dict[str, dict[int, str]] = {}
    for t in (*spec.inputs, *spec.outputs):
        for i, dim in enumerate(t.shape):
            if dim == DYNAMIC:
                label = "batch" if (i == 0 and spec.batch_dynamic) else f"{t.name}_{i}"
                if spec.name == "hubert":
                    label = "samples" if t.name == "input_values" else "frames"
                axes.setdefault(t.name, {})[i] = label
    return axes


def export_stage(module: nn.Module, spec: StageSpec, inputs: dict[str, np.ndarray], path: Path) -> None:
    """Trace `module` on `inputs` and write `path`; the graph's I/O names are checked against `spec`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    args = tuple(torch.from_numpy(inputs[name]) for name in spec.input_names)
    module.eval()
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            module,
            args,
            str(path),
            dynamo=False,
            opset_version=OPSET,
            input_names=spec.input_names,
            output_names=spec.output_names,
            dynamic_axes=dynamic_axes(spec),
            do_constant_folding=True,
        )
    _declare_static_output_dims(path, spec)
    check_onnx_io(path, spec)


def _declare_static_output_dims(path: Path, spec: StageSpec) -> None:
    """The TorchScript exporter leaves some output dims symbolic even when they are fixed (LMDM's
    80 x 265). Write the spec's static dims into the graph so Triton and TensorRT see them; the
    parity check then confirms the runtime shapes agree."""
    model = onnx.load(str(path))
    changed = False
    for value, tensor in zip(model.graph.output, spec.outputs):
        dims = value.type.tensor_type.shape.dim
        if len(dims) != len(tensor.shape):
            raise ValueError(f"{path}: output {tensor.name} has rank {len(dims)}, spec says {len(tensor.shape)}")
        for dim, want in zip(dims, tensor.shape):
            if want != DYNAMIC and not dim.HasField("dim_value"):
                dim.dim_value = want
                changed = True
    if changed:
        onnx.save(model, str(path))


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
