"""ONNX Runtime on the CPU: the one way this project opens an exported stage (`ort_session`), and every
stage of an export run in this process (`OrtStages`, the in-process implementation of `Stages`)."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import onnxruntime as ort

from ditto_triton.manifest import read_manifest


def ort_session(
    path: Path, threads: int = 2, spinning: bool = True, flush_denormals: bool = True
) -> ort.InferenceSession:
    """A CPU session with `threads` intra-op threads and one inter-op thread.

    `spinning` lets idle intra-op threads spin-wait (ORT's default, fastest alone); turn it off where
    several runners share the cores, as the server's stage processes do. `flush_denormals` is for this
    project's networks; Ditto's face models run as Ditto runs them, without it."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.add_session_config_entry("session.intra_op.allow_spinning", "1" if spinning else "0")
    # The warp's Gaussian keypoint heatmaps underflow into denormals wherever the keypoints lie inside the
    # feature volume (as real ones do); flushing them to zero halves the warp's CPU time, and changes
    # nothing above 1e-38.
    options.add_session_config_entry("session.set_denormal_as_zero", "1" if flush_denormals else "0")
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


class OrtStages:
    """Every stage of an export directory, run with ONNX Runtime (CPU) in this process."""

    def __init__(self, export_dir: Path, threads: int = 2, spinning: bool = True) -> None:
        self.manifest = read_manifest(export_dir)
        self.threads = threads
        self.spinning = spinning
        self._sessions = {
            name: self._open(name, Path(export_dir) / entry["file"]) for name, entry in self.manifest["stages"].items()
        }
        self._locks = {name: threading.Lock() for name in self._sessions}

    def _open(self, name: str, path: Path) -> ort.InferenceSession:
        return ort_session(path, self.threads, self.spinning)

    def infer(self, name: str, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        session = self._sessions[name]
        with self._locks[name]:
            outputs = session.run(None, inputs)
        return {o.name: v for o, v in zip(session.get_outputs(), outputs)}
