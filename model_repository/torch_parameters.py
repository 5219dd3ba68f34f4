"""Config parameters of a torch-runner stage (`runner: torch`), parsed strictly; no torch import,
so rendering a repository does not load PyTorch."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ditto_triton.model_repository.stage_runtime import parse_bool

RUNNER = "runner"
PROFILE = "profile"
CHECKPOINT_FILE = "checkpoint_file"
DEVICE = "device"
PRECISION = "precision"
CUDA_GRAPHS = "cuda_graphs"
_KNOWN = (RUNNER, PROFILE, CHECKPOINT_FILE, DEVICE, PRECISION, CUDA_GRAPHS)
PRECISIONS = ("fp16", "fp32")


@dataclass(frozen=True)
class TorchParameters:
    """`device`: "cuda" (the instance's GPU), "cuda:N" or "cpu"; `precision` fp16 runs the module
    under fp16 autocast (the warp network's GridSamples stay fp32); `cuda_graphs` captures one graph
    per batch size on first use (batch-dynamic stages on CUDA only)."""

    profile: str
    checkpoint_file: str = "model.pth"
    device: str = "cuda"
    precision: str = "fp32"
    cuda_graphs: bool = False

    def as_config(self) -> dict[str, object]:
        return {
            RUNNER: "torch",
            PROFILE: self.profile,
            CHECKPOINT_FILE: self.checkpoint_file,
            DEVICE: self.device,
            PRECISION: self.precision,
            CUDA_GRAPHS: self.cuda_graphs,
        }

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> TorchParameters:
        raw = {k: v["string_value"] for k, v in config.get("parameters", {}).items()}
        unknown = sorted(k for k in raw if k not in _KNOWN and not k.isupper())
        if unknown:
            raise ValueError(f"unknown parameter(s) {unknown}; a torch stage takes {list(_KNOWN)}")
        if PROFILE not in raw:
            raise ValueError(f"parameter {PROFILE!r} is required for a torch stage")
        params = cls(
            profile=raw[PROFILE],
            checkpoint_file=raw.get(CHECKPOINT_FILE, "model.pth"),
            device=raw.get(DEVICE, "cuda"),
            precision=raw.get(PRECISION, "fp32"),
            cuda_graphs=parse_bool(CUDA_GRAPHS, raw[CUDA_GRAPHS]) if CUDA_GRAPHS in raw else False,
        )
        params.check()
        return params

    def check(self) -> None:
        if self.precision not in PRECISIONS:
            raise ValueError(f"parameter {PRECISION!r} must be one of {PRECISIONS}, found {self.precision!r}")
        if not (self.device == "cpu" or self.device == "cuda" or self.device.startswith("cuda:")):
            raise ValueError(f"parameter {DEVICE!r} must be 'cuda', 'cuda:N' or 'cpu', found {self.device!r}")
        if self.device == "cpu" and self.precision == "fp16":
            raise ValueError("precision fp16 needs a CUDA device; use precision fp32 with device cpu")
        if self.device == "cpu" and self.cuda_graphs:
            raise ValueError("cuda_graphs needs a CUDA device; set it to false with device cpu")
        name = Path(self.checkpoint_file)
        if not self.checkpoint_file or name.is_absolute() or ".." in name.parts:
            raise ValueError(f"parameter {CHECKPOINT_FILE!r} must be a file name in the version directory")
