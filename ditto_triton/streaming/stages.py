"""The one interface the streaming logic uses to run networks, and its in-process implementation.

`Stages.infer(name, inputs)` takes and returns numpy arrays keyed by the tensor names of
`ditto_triton.stages`. The in-process runner uses ONNX Runtime on the exported files; the Triton
orchestrator implements the same protocol with BLS calls.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Protocol

import numpy as np


class Stages(Protocol):
    def infer(self, name: str, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]: ...


class OrtStages:
    """Every stage of an export directory, run with ONNX Runtime in this process."""

    def __init__(self, export_dir: Path, threads: int = 2) -> None:
        import onnxruntime as ort

        from ditto_triton.export.manifest import read_manifest

        self.manifest = read_manifest(export_dir)
        self._sessions = {}
        self._locks = {}
        for name, entry in self.manifest["stages"].items():
            opts = ort.SessionOptions()
            opts.intra_op_num_threads = threads
            opts.inter_op_num_threads = 1
            self._sessions[name] = ort.InferenceSession(
                str(Path(export_dir) / entry["file"]), opts, providers=["CPUExecutionProvider"]
            )
            self._locks[name] = threading.Lock()

    def infer(self, name: str, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        session = self._sessions[name]
        with self._locks[name]:
            outputs = session.run(None, inputs)
        return {o.name: v for o, v in zip(session.get_outputs(), outputs)}
