"""A stage run by PyTorch (the `torch` runner): the network module built from the export's
checkpoint, on CUDA in Ditto's precision split or on the CPU, optionally replayed as CUDA graphs.

Triton-free like `stage_runtime.StageRunner` (same request checking and batching); the python
backend adapter (`backends/stage.py`) picks this runner when the config says `runner: torch`.
This is the GPU flavor that needs no TensorRT, and the tensorrt flavor's warp network: PyTorch has
a CUDA kernel for the 5-D GridSample, which TensorRT lacks.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ditto_triton.export.registry import STAGE_NETWORKS
from ditto_triton.export.weights import load_checkpoint_module
from ditto_triton.model_repository.batching import Arrays, run_requests
from ditto_triton.model_repository.stage_runtime import wire_tensors
from ditto_triton.model_repository.torch_parameters import TorchParameters
from ditto_triton.profiles import get_profile
from ditto_triton.stages import stage_specs

log = logging.getLogger(__name__)


class _GraphCache:
    """One CUDA graph per batch size: static input buffers, captured after a warm-up on a side stream."""

    def __init__(self, forward) -> None:
        self._forward = forward
        self._graphs: dict[int, tuple[torch.cuda.CUDAGraph, list[torch.Tensor], tuple[torch.Tensor, ...]]] = {}

    def __call__(self, inputs: list[torch.Tensor]) -> tuple[torch.Tensor, ...]:
        batch = inputs[0].shape[0]
        if batch not in self._graphs:
            static = [t.clone() for t in inputs]
            stream = torch.cuda.Stream()
            stream.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(stream):
                for _ in range(2):
                    self._forward(static)
            torch.cuda.current_stream().wait_stream(stream)
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph):
                outputs = self._forward(static)
            self._graphs[batch] = (graph, static, outputs)
        graph, static, outputs = self._graphs[batch]
        for buffer, value in zip(static, inputs):
            buffer.copy_(value)
        graph.replay()
        return tuple(o.clone() for o in outputs)


class TorchStageRunner:
    """One stage as a PyTorch module; `run` serves a list of requests like `StageRunner.run`."""

    def __init__(self, config: Mapping[str, Any], version_dir: Path, device_id: int | None = None) -> None:
        self.name: str = config.get("name", "?")
        if self.name not in STAGE_NETWORKS:
            raise ValueError(f"{self.name}: no PyTorch network for this stage (known: {sorted(STAGE_NETWORKS)})")
        self.batched = int(config.get("max_batch_size", 0)) > 0
        self.inputs = wire_tensors(config, "input")
        self.outputs = wire_tensors(config, "output")
        self.parameters = TorchParameters.from_config(config)
        device = self.parameters.device
        if device == "cuda" and device_id is not None:
            device = f"cuda:{device_id}"
        if device != "cpu" and not torch.cuda.is_available():
            raise RuntimeError(f"{self.name}: device {device!r} requested but PyTorch sees no CUDA device")
        self.device = torch.device(device)
        if self.device.type == "cpu":
            torch.set_flush_denormal(True)  # as ONNX Runtime's stages do (the warp's heatmaps underflow)
        path = Path(version_dir) / self.parameters.checkpoint_file
        if not path.is_file():
            raise FileNotFoundError(f"{self.name}: checkpoint {path} not found")
        profile = get_profile(self.parameters.profile)
        spec = stage_specs(profile)[self.name]
        if [t.name for t in self.inputs] != spec.input_names or [t.name for t in self.outputs] != spec.output_names:
            raise ValueError(
                f"{self.name}: config I/O {[t.name for t in self.inputs]} -> {[t.name for t in self.outputs]} differs "
                f"from the stage spec {spec.input_names} -> {spec.output_names}"
            )
        self.module = load_checkpoint_module(STAGE_NETWORKS[self.name], spec, profile, path).to(self.device)
        self._graphs = _GraphCache(self._forward) if self.parameters.cuda_graphs and self.batched else None
        log.info(
            "%s: %s on %s (%s, cuda graphs %s)",
            self.name,
            path,
            self.device,
            self.parameters.precision,
            self._graphs is not None,
        )

    def _forward(self, inputs: list[torch.Tensor]) -> tuple[torch.Tensor, ...]:
        fp16 = self.parameters.precision == "fp16"
        # autocast's cache of cast weights must not outlive a CUDA graph capture
        cache = not self.parameters.cuda_graphs
        with torch.inference_mode(), torch.autocast(self.device.type, torch.float16, enabled=fp16, cache_enabled=cache):
            out = self.module(*inputs)
        return out if isinstance(out, tuple) else (out,)

    def _run(self, arrays: Arrays) -> dict[str, np.ndarray]:
        inputs = [torch.from_numpy(np.ascontiguousarray(arrays[t.name])).to(self.device) for t in self.inputs]
        raw = self._graphs(inputs) if self._graphs is not None else self._forward(inputs)
        return {
            spec.name: tensor.detach().to("cpu").numpy().astype(spec.dtype, copy=False)
            for spec, tensor in zip(self.outputs, raw)
        }

    def run(self, requests: Sequence[Mapping[str, np.ndarray | None]]) -> list[Arrays | Exception]:
        return run_requests(requests, self.inputs, self.outputs, self._run, batched=self.batched)
