"""A python-ort stage model without Triton: its config (as the JSON Triton hands `initialize`), its
parameters and its ONNX Runtime session. `backends/stage.py` only adapts this to `pb_utils`.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ditto_triton.export.ort_runtime import ort_session
from ditto_triton.model_repository.batching import Arrays, RequestError, WireTensor, run_requests
from ditto_triton.model_repository.dtypes import numpy_dtype

log = logging.getLogger(__name__)

# Config `parameters` keys a python-ort stage understands (all string values, as Triton stores them).
ONNX_FILE = "onnx_file"
INTRA_OP_THREADS = "ort_intra_op_threads"
ALLOW_SPINNING = "ort_allow_spinning"
FLUSH_DENORMALS = "ort_flush_denormals"
RUNNER = "runner"  # "ort" (or absent) selects this runner in backends/stage.py
_KNOWN = (RUNNER, ONNX_FILE, INTRA_OP_THREADS, ALLOW_SPINNING, FLUSH_DENORMALS)


def parse_bool(key: str, text: str) -> bool:
    if text.lower() not in ("true", "false"):
        raise ValueError(f"parameter {key!r} must be 'true' or 'false', found {text!r}")
    return text.lower() == "true"


@dataclass(frozen=True)
class StageParameters:
    """`onnx_file` (relative to the version directory), ORT intra-op threads (0 = ORT's default),
    whether ORT worker threads spin while idle (off: several stage processes share the cores) and whether
    denormals are flushed to zero (this project's networks; not Ditto's face models)."""

    onnx_file: str = "model.onnx"
    intra_op_threads: int = 0
    allow_spinning: bool = False
    flush_denormals: bool = True

    def as_config(self) -> dict[str, object]:
        return {
            ONNX_FILE: self.onnx_file,
            INTRA_OP_THREADS: self.intra_op_threads,
            ALLOW_SPINNING: self.allow_spinning,
            FLUSH_DENORMALS: self.flush_denormals,
        }

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> StageParameters:
        """Parse a model config's `parameters` strictly: unknown lower-case keys are errors
        (upper-case keys are Triton's or the python backend's own and are left to them)."""
        raw = {k: v["string_value"] for k, v in config.get("parameters", {}).items()}
        unknown = sorted(k for k in raw if k not in _KNOWN and not k.isupper())
        if unknown:
            raise ValueError(f"unknown parameter(s) {unknown}; a python-ort stage takes {list(_KNOWN)}")
        params = cls()
        try:
            threads = int(raw.get(INTRA_OP_THREADS, params.intra_op_threads))
        except ValueError:
            found = raw[INTRA_OP_THREADS]
            raise ValueError(f"parameter {INTRA_OP_THREADS!r} must be an integer, found {found!r}") from None
        if threads < 0:
            raise ValueError(f"parameter {INTRA_OP_THREADS!r} must be >= 0, found {threads}")
        spinning = parse_bool(ALLOW_SPINNING, raw[ALLOW_SPINNING]) if ALLOW_SPINNING in raw else params.allow_spinning
        flush = parse_bool(FLUSH_DENORMALS, raw[FLUSH_DENORMALS]) if FLUSH_DENORMALS in raw else params.flush_denormals
        onnx_file = raw.get(ONNX_FILE, params.onnx_file)
        if not onnx_file or Path(onnx_file).is_absolute() or ".." in Path(onnx_file).parts:
            raise ValueError(
                f"parameter {ONNX_FILE!r} must be a file name inside the version directory, found {onnx_file!r}"
            )
        return cls(onnx_file=onnx_file, intra_op_threads=threads, allow_spinning=spinning, flush_denormals=flush)


def wire_tensors(config: Mapping[str, Any], key: str) -> list[WireTensor]:
    """The config's `input` or `output` list as `WireTensor`s (dims may be JSON ints or strings)."""
    batched = int(config.get("max_batch_size", 0)) > 0
    lead = [-1] if batched else []
    out = []
    for entry in config.get(key, []):
        dims = [int(d) for d in entry.get("dims", [])]
        reshape = entry.get("reshape")
        model_dims = [int(d) for d in reshape.get("shape", [])] if reshape is not None else dims
        out.append(
            WireTensor(
                name=entry["name"],
                dtype=numpy_dtype(entry.get("data_type", "TYPE_FP32")),
                wire_shape=tuple(lead + dims),
                model_shape=tuple(lead + model_dims),
            )
        )
    return out


class StageRunner:
    """One stage: an ORT CPU session plus the config's tensors; `run` serves a list of requests."""

    def __init__(self, config: Mapping[str, Any], version_dir: Path) -> None:
        self.name: str = config.get("name", "?")
        self.batched = int(config.get("max_batch_size", 0)) > 0
        self.inputs = wire_tensors(config, "input")
        self.outputs = wire_tensors(config, "output")
        self.parameters = StageParameters.from_config(config)
        path = Path(version_dir) / self.parameters.onnx_file
        if not path.is_file():
            raise FileNotFoundError(f"{self.name}: ONNX file {path} not found")
        p = self.parameters
        self.session = ort_session(path, p.intra_op_threads, p.allow_spinning, p.flush_denormals)
        self._check_session()
        log.info(
            "%s: %s loaded (%d intra-op threads, batched=%s)",
            self.name,
            path,
            self.parameters.intra_op_threads,
            self.batched,
        )

    def _check_session(self) -> None:
        found_in = [i.name for i in self.session.get_inputs()]
        found_out = [o.name for o in self.session.get_outputs()]
        want_in, want_out = [t.name for t in self.inputs], [t.name for t in self.outputs]
        if found_in != want_in or not set(want_out) <= set(found_out):
            raise ValueError(
                f"{self.name}: ONNX I/O {found_in} -> {found_out} does not match the config's {want_in} -> {want_out}"
            )

    def _run(self, arrays: Arrays) -> dict[str, np.ndarray]:
        from onnxruntime.capi.onnxruntime_pybind11_state import InvalidArgument

        names = [t.name for t in self.outputs]
        try:
            return dict(zip(names, self.session.run(names, arrays)))
        except InvalidArgument as exc:  # ONNX Runtime's verdict on the inputs (e.g. audio too short)
            raise RequestError(f"the network cannot run on these inputs: {exc}") from exc

    def run(self, requests: Sequence[Mapping[str, np.ndarray | None]]) -> list[Arrays | Exception]:
        """One result per request, in order: {output: array} or the exception for that request."""
        return run_requests(requests, self.inputs, self.outputs, self._run, batched=self.batched)
