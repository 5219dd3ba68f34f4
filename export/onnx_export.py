"""Export one stage module to ONNX with the names, dynamic axes and opset the stage spec asks for,
sanitised by Polygraphy (`onnx_sanitize.py`)."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import torch
from torch import nn

from ditto_triton.export.onnx_io import check_onnx_io
from ditto_triton.export.onnx_sanitize import sanitize_model
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


def export_stage(
    module: nn.Module, spec: StageSpec, inputs: dict[str, np.ndarray], path: Path, *, sanitize: bool = True
) -> dict[str, Any] | None:
    """Trace `module` on `inputs` and write `path`, sanitised by Polygraphy unless `sanitize` is off;
    the graph's I/O names are checked against `spec`. Returns the sanitiser's record (None when off)."""
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
    model = onnx.load(str(path))
    _declare_static_output_dims(model, spec, path)
    record = None
    if sanitize:
        model, record = sanitize_model(model)
    onnx.save(model, str(path))
    check_onnx_io(path, spec)
    return record


def _declare_static_output_dims(model: onnx.ModelProto, spec: StageSpec, path: Path) -> None:
    """The TorchScript exporter leaves some output dims symbolic even when they are fixed (LMDM's
    80 x 265). Write the spec's static dims into the graph so Triton and TensorRT see them; the
    parity check then confirms the runtime shapes agree."""
    for value, tensor in zip(model.graph.output, spec.outputs):
        dims = value.type.tensor_type.shape.dim
        if len(dims) != len(tensor.shape):
            raise ValueError(f"{path}: output {tensor.name} has rank {len(dims)}, spec says {len(tensor.shape)}")
        for dim, want in zip(dims, tensor.shape):
            if want != DYNAMIC and not dim.HasField("dim_value"):
                dim.dim_value = want
