"""Python-backend model shared by every python stage (`<stage>/1/model.py` re-exports it).

Inputs and outputs are the stage's (see `ditto_triton.stages`), as declared in its `config.pbtxt`.
The config parameter `runner` picks what runs the network: absent, ONNX Runtime on CPU
(`stage_runtime.StageRunner`: `onnx_file`, `ort_intra_op_threads`, `ort_allow_spinning`); `torch`,
the PyTorch module on the instance's GPU or the CPU (`torch_runtime.TorchStageRunner`). One
response per request.
Batch-dynamic stages (max_batch_size > 0) run the whole list of requests Triton hands `execute`
as one call of the runner (concatenated along axis 0 in request order, split back); the others run
request by request. A request with a missing input or a wrong dtype/shape, or whose run fails, gets
its own `TritonError` response; the other requests still get their results.

This is the only module of the stage path that imports `triton_python_backend_utils`.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import triton_python_backend_utils as pb_utils

from ditto_triton.model_repository.backends.responses import error_response
from ditto_triton.model_repository.stage_runtime import StageRunner
from ditto_triton.protocol import BadRequest


def make_runner(args: dict[str, str]):
    config = json.loads(args["model_config"])
    version_dir = Path(args["model_repository"]) / args["model_version"]
    runner = config.get("parameters", {}).get("runner", {}).get("string_value", "ort")
    if runner == "torch":
        from ditto_triton.model_repository.torch_runtime import TorchStageRunner

        on_gpu = args.get("model_instance_kind") == "GPU"
        return TorchStageRunner(config, version_dir, int(args["model_instance_device_id"]) if on_gpu else None)
    if runner != "ort":
        raise ValueError(f"{config.get('name')}: parameter 'runner' must be 'ort' or 'torch', found {runner!r}")
    return StageRunner(config, version_dir)


class TritonPythonModel:
    def initialize(self, args: dict[str, str]) -> None:
        self.runner = make_runner(args)
        self._input_names = [t.name for t in self.runner.inputs]
        pb_utils.Logger.log_info(f"[ditto] {self.runner.name}: ready ({self.runner.parameters})")

    def execute(self, requests: list) -> list:
        gathered = []
        for request in requests:
            arrays: dict[str, np.ndarray | None] = {}
            for name in self._input_names:
                tensor = pb_utils.get_input_tensor_by_name(request, name)
                arrays[name] = None if tensor is None else tensor.as_numpy()
            gathered.append(arrays)
        responses = []
        for result in self.runner.run(gathered):
            if isinstance(result, Exception):
                code = (
                    pb_utils.TritonError.INVALID_ARG
                    if isinstance(result, BadRequest)
                    else pb_utils.TritonError.INTERNAL
                )
                responses.append(error_response(f"{self.runner.name}: {result}", self.runner.name, code))
            else:
                tensors = [pb_utils.Tensor(name, np.ascontiguousarray(array)) for name, array in result.items()]
                responses.append(pb_utils.InferenceResponse(output_tensors=tensors))
        return responses

    def finalize(self) -> None:
        self.runner = None
