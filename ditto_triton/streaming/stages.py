"""The one interface the streaming logic uses to run networks, and its in-process implementation.

`Stages.infer(name, inputs)` takes and returns numpy arrays keyed by the tensor names of
`ditto_triton.stages`. The in-process runner uses ONNX Runtime on the exported files; the Triton
orchestrator implements the same protocol with BLS calls. A runner that can run a whole chain of
stages in one call (Triton: an ensemble) also has `infer_chain(chain, inputs)`; `infer_chain` here
uses it when present and composes the chain's steps through `infer` otherwise.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Protocol

import numpy as np

from ditto_triton.chains import Chain, run_chain


class Stages(Protocol):
    def infer(self, name: str, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]: ...


def infer_chain(stages: Stages, chain: Chain, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    native = getattr(stages, "infer_chain", None)
    if native is not None:
        return native(chain, inputs)
    return run_chain(chain, stages.infer, inputs)


class OrtStages:
    """Every stage of an export directory, run with ONNX Runtime (CPU) in this process.

    `threads` intra-op threads per stage; `spinning` lets idle ORT worker threads spin (ORT's
    default, fastest alone; off where several runners share the cores, as on the server)."""

    def __init__(self, export_dir: Path, threads: int = 2, spinning: bool = True) -> None:
        import onnxruntime as ort

        from ditto_triton.export.manifest import read_manifest

        self.manifest = read_manifest(export_dir)
        self.threads = threads
        self._sessions = {}
        self._locks = {}
        for name, entry in self.manifest["stages"].items():
            opts = ort.SessionOptions()
            opts.intra_op_num_threads = threads
            opts.inter_op_num_threads = 1
            if not spinning:
                opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
            self._sessions[name] = ort.InferenceSession(
                str(Path(export_dir) / entry["file"]), opts, providers=["CPUExecutionProvider"]
            )
            self._locks[name] = threading.Lock()

    def infer(self, name: str, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        session = self._sessions[name]
        with self._locks[name]:
            outputs = session.run(None, inputs)
        return {o.name: v for o, v in zip(session.get_outputs(), outputs)}
