"""Export every stage of a profile: weights -> ONNX (sanitised by Polygraphy) -> parity check -> manifest."""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime
import torch

from ditto_triton import manifest as mf
from ditto_triton.export.face_models import import_face_models
from ditto_triton.export.onnx_export import OPSET, export_stage
from ditto_triton.export.onnx_sanitize import sanitizer_versions
from ditto_triton.export.ort_runtime import ort_session
from ditto_triton.export.parity import TOLERANCE, compare, time_stage
from ditto_triton.export.registry import STAGE_NETWORKS
from ditto_triton.export.sample_inputs import HUBERT_WINDOW, sample_inputs
from ditto_triton.export.weights import SYNTHETIC, load_stage
from ditto_triton.profiles import Profile
from ditto_triton.stages import STAGE_ORDER, StageSpec, stage_specs


class ParityError(RuntimeError):
    """An exported graph that does not reproduce PyTorch within the tolerance."""


@dataclass
class ExportOptions:
    profile: Profile
    weights: str | Path = "synthetic"
    seed: int = 0
    out: Path = Path("out/export")
    stages: tuple[str, ...] = STAGE_ORDER
    parity: bool = True
    timing_repeats: int = 0
    tolerance: float = TOLERANCE
    on_status: Callable[[str, str], None] = field(default=lambda stage, msg: None)


def parity_cases(spec: StageSpec, seed: int) -> Iterable[tuple[str, dict[str, np.ndarray]]]:
    """Named input sets: batch 1, batch 2 for batch-dynamic stages, several timesteps for LMDM,
    two window lengths for HuBERT."""
    if spec.name == "hubert":
        yield "samples=6480", sample_inputs(spec, seed=seed, samples=HUBERT_WINDOW)
        yield "samples=9680", sample_inputs(spec, seed=seed + 1, samples=HUBERT_WINDOW + 3200)
        return
    if spec.name == "lmdm":
        for t in (999, 500, 37):
            yield f"batch=1,t={t}", sample_inputs(spec, batch=1, seed=seed + t, timestep=t)
    else:
        yield "batch=1", sample_inputs(spec, batch=1, seed=seed)
    if spec.batch_dynamic:
        yield "batch=2", sample_inputs(spec, batch=2, seed=seed + 7)


def versions() -> dict[str, str]:
    import transformers

    return {
        "torch": torch.__version__,
        "onnx": onnx.__version__,
        "onnxruntime": onnxruntime.__version__,
        "transformers": transformers.__version__,
        "numpy": np.__version__,
        **sanitizer_versions(),
    }


def export_one(spec: StageSpec, opts: ExportOptions) -> dict[str, Any]:
    net = STAGE_NETWORKS[spec.name]
    status = lambda msg: opts.on_status(spec.name, msg)  # noqa: E731
    status("loading weights")
    loaded = load_stage(net, spec, opts.profile, opts.weights, opts.seed, opts.out / "synthetic_weights")
    onnx_path = opts.out / spec.onnx_file
    if loaded.module is None:
        status("copying user-supplied ONNX")
        shutil.copyfile(loaded.onnx_file, onnx_path)
        return mf.stage_entry(spec, onnx_path, loaded.source, parity=None, export_s=0.0, sanitized=None)

    module = loaded.module.eval()
    net.prepare_export(module)
    status("exporting ONNX (sanitised by Polygraphy)")
    t0 = time.perf_counter()
    sanitized = export_stage(module, spec, sample_inputs(spec, seed=opts.seed), onnx_path)
    export_s = time.perf_counter() - t0

    parity: dict[str, dict[str, float]] | None = None
    timing: dict[str, float] | None = None
    if opts.parity or opts.timing_repeats:
        session = ort_session(onnx_path)
    if opts.parity:
        status("checking parity")
        parity = {case: compare(module, session, spec.input_names, x) for case, x in parity_cases(spec, opts.seed)}
        worst = max((err, case, out) for case, errs in parity.items() for out, err in errs.items())
        if worst[0] > opts.tolerance:
            raise ParityError(
                f"{spec.name}: ONNX Runtime differs from PyTorch by {worst[0]:.2e} (relative) on output "
                f"{worst[2]!r}, case {worst[1]}; tolerance {opts.tolerance:.0e}"
            )
    if opts.timing_repeats:
        status("timing")
        timing = time_stage(module, session, spec.input_names, sample_inputs(spec, seed=opts.seed), opts.timing_repeats)
    n_params = sum(p.numel() for p in net.state_module(module).parameters())
    return mf.stage_entry(
        spec,
        onnx_path,
        loaded.source,
        parity=parity,
        timing=timing,
        export_s=round(export_s, 2),
        params=n_params,
        sanitized=sanitized,
    )


def export_all(opts: ExportOptions) -> Path:
    """Export the requested stages and write `manifest.json` into `opts.out`; returns its path."""
    unknown = [s for s in opts.stages if s not in STAGE_ORDER]
    if unknown:
        raise ValueError(f"unknown stage(s) {unknown}; choose from {list(STAGE_ORDER)}")
    opts.out.mkdir(parents=True, exist_ok=True)
    specs = stage_specs(opts.profile)
    manifest = mf.new_manifest(opts.profile, versions(), OPSET)
    manifest["weights"] = str(opts.weights)
    manifest["seed"] = opts.seed
    manifest["tolerance"] = opts.tolerance
    for name in STAGE_ORDER:
        if name in opts.stages:
            manifest["stages"][name] = export_one(specs[name], opts)
            opts.on_status(name, "done")
    if str(opts.weights) != SYNTHETIC:
        registration = import_face_models(Path(opts.weights), opts.out)
        if registration is not None:
            manifest["registration"] = registration
            opts.on_status("face models", f"Ditto's registration ({registration['eyes']} eye landmarks)")
    return mf.write_manifest(manifest, opts.out)
