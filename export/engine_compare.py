"""Every TensorRT plan checked against ONNX Runtime with Polygraphy's Comparator.

After `ditto-trt-build` builds a plan, an `OnnxrtRunner` (the exported ONNX on the CPU) and a
`TrtRunner` (the plan) run the same seeded inputs at the smallest and the largest shapes of the
plan's optimization profile, and `SimpleCompareFunc` (`CompareFunc.simple`) compares every output
element by element: an element passes when its absolute error is within `atol` or its relative error
within `rtol`. A plan that fails is not kept and the build stops, naming the stage, the case, the
output and the errors.

The tolerances are plain data, declared once per stage from its build precision
(`COMPARE_TOLERANCES`). Everything here but `trt_runner` runs without TensorRT.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import polygraphy
from polygraphy.backend.base import BaseRunner
from polygraphy.backend.onnxrt import OnnxrtRunner
from polygraphy.comparator import Comparator, OutputCompareResult, RunResults, SimpleCompareFunc
from polygraphy.logger import G_LOGGER

from ditto_triton.export.engine_plan import EngineBuild, EnginePlanError, precision
from ditto_triton.export.ort_runtime import ort_session
from ditto_triton.export.sample_inputs import sample_inputs
from ditto_triton.face_models import FACE_MODELS
from ditto_triton.profiles import Profile
from ditto_triton.stages import DYNAMIC, STAGE_ORDER, StageSpec, stage_specs

ORT_RUNNER = "onnxruntime"
TRT_RUNNER = "tensorrt"

Feed = dict[str, np.ndarray]


class EngineMismatch(RuntimeError):
    """A TensorRT plan whose outputs differ from ONNX Runtime's beyond the stage's tolerance."""


@dataclass(frozen=True)
class Tolerance:
    atol: float
    rtol: float


# fp32 stages still run their matrix products in TF32 (TensorRT's default: a 10-bit mantissa); fp16
# stages keep fp16 activations through every layer, ten times looser. Chosen without a GPU: the
# first run on one may tune them (docs/gpu.md).
PRECISION_TOLERANCES: dict[str, Tolerance] = {
    "fp32": Tolerance(atol=5e-3, rtol=5e-3),
    "fp16": Tolerance(atol=5e-2, rtol=5e-2),
}
COMPARED_STAGES = (*STAGE_ORDER, *FACE_MODELS)
COMPARE_TOLERANCES: dict[str, Tolerance] = {stage: PRECISION_TOLERANCES[precision(stage)] for stage in COMPARED_STAGES}


def tolerance_for(stage: str) -> Tolerance:
    if stage not in COMPARE_TOLERANCES:
        raise EnginePlanError(f"{stage}: no comparison tolerance declared (engine_compare.COMPARE_TOLERANCES)")
    return COMPARE_TOLERANCES[stage]


def spec_of(stage: str, profile: Profile) -> StageSpec:
    return FACE_MODELS[stage].spec if stage in FACE_MODELS else stage_specs(profile)[stage]


def compare_cases(spec: StageSpec, build: EngineBuild, seed: int = 0) -> list[tuple[str, Feed]]:
    """Seeded inputs at the smallest and the largest shapes of the plan's optimization profile
    (one case for a fixed-shape plan), each with a label for messages."""
    cases: dict[str, Feed] = {}
    for end in (0, 2):
        shapes = {name: bounds[end] for name, bounds in build.shapes.items()}
        first = shapes[spec.inputs[0].name]
        if spec.batch_dynamic:
            label, feed = f"batch={first[0]}", sample_inputs(spec, batch=first[0], seed=seed + end)
        elif DYNAMIC in spec.inputs[0].shape:
            label, feed = f"samples={first[-1]}", sample_inputs(spec, samples=first[-1], seed=seed + end)
        else:
            label, feed = "fixed shape", sample_inputs(spec, seed=seed)
        found = {name: array.shape for name, array in feed.items()}
        if found != shapes:
            raise EnginePlanError(f"{build.stage}: comparison inputs {found} do not match the profile's {shapes}")
        cases.setdefault(label, feed)
    return list(cases.items())


def ort_runner(onnx_file: Path, threads: int | None = None) -> OnnxrtRunner:
    session = ort_session(onnx_file, threads=threads or os.cpu_count() or 2)
    return OnnxrtRunner(session, name=ORT_RUNNER)


def trt_runner(plan: Path) -> BaseRunner:
    """The plan in Polygraphy's TrtRunner. A plugin the plan uses must be registered first
    (`tensorrt_build.init_plugins`)."""
    from polygraphy.backend.trt import EngineFromBytes, TrtRunner

    return TrtRunner(EngineFromBytes(Path(plan).read_bytes()), name=TRT_RUNNER)


def run_cases(runners: Sequence[BaseRunner], cases: list[tuple[str, Feed]]) -> RunResults:
    """Both runners on every case's inputs, reference first."""
    with G_LOGGER.verbosity(G_LOGGER.WARNING):
        return Comparator.run(list(runners), data_loader=[feed for _, feed in cases])


def _failure(name: str, label: str, result: Any, shapes: tuple[Any, Any], tolerance: Tolerance) -> str | None:
    """Why one compared output fails, or None when it passes."""
    if not isinstance(result, OutputCompareResult):  # Polygraphy's verdict on a shape mismatch is a bare False
        return None if result else f"output {name!r} ({label}): shape {shapes[1]}, expected {shapes[0]}"
    if result:
        return None
    return (
        f"output {name!r} ({label}): max abs error {result.max_absdiff:.2e} (atol {tolerance.atol:.0e}), "
        f"max rel error {result.max_reldiff:.2e} (rtol {tolerance.rtol:.0e})"
    )


def check_accuracy(
    stage: str, results: RunResults, labels: Sequence[str], tolerance: Tolerance
) -> dict[str, dict[str, dict[str, float]]]:
    """{case: {output: {max_abs, max_rel}}} of the second runner against the first (the reference);
    raises EngineMismatch naming the stage, case, output and errors against the tolerance when any
    output fails or is missing."""
    (ref_name, reference), (test_name, tested) = results[0], results[1]
    compare = SimpleCompareFunc(atol=tolerance.atol, rtol=tolerance.rtol)
    with G_LOGGER.verbosity(G_LOGGER.CRITICAL):
        accuracy = Comparator.compare_accuracy(results, compare_func=compare)
    (iterations,) = accuracy[0].values()
    errors: dict[str, dict[str, dict[str, float]]] = {}
    failures = []
    for label, ref, found, outputs in zip(labels, reference, tested, iterations, strict=True):
        failures += [f"output {name!r} ({label}): missing" for name in ref.keys() - outputs.keys()]
        for name, result in outputs.items():
            failures.append(_failure(name, label, result, (ref[name].shape, found[name].shape), tolerance))
            if isinstance(result, OutputCompareResult):
                errors.setdefault(label, {})[name] = {"max_abs": result.max_absdiff, "max_rel": result.max_reldiff}
    failures = [f for f in failures if f]
    if failures:
        raise EngineMismatch(
            f"{stage}: {test_name} differs from {ref_name} beyond the tolerance (an element passes within atol "
            f"or rtol): {'; '.join(failures)}. `ditto-trt-build --no-compare` skips this check"
        )
    return errors


def compare_runners(
    stage: str, runners: Sequence[BaseRunner], cases: list[tuple[str, Feed]], tolerance: Tolerance
) -> dict[str, Any]:
    """Run and compare; the engines manifest's record of the comparison."""
    errors = check_accuracy(stage, run_cases(runners, cases), [label for label, _ in cases], tolerance)
    return {"tool": f"polygraphy {polygraphy.__version__}", **asdict(tolerance), "errors": errors}


def compare_plan(build: EngineBuild, plan: Path, profile: Profile) -> dict[str, Any]:
    """The plan against ONNX Runtime on its ONNX file (GPU and TensorRT needed)."""
    cases = compare_cases(spec_of(build.stage, profile), build)
    runners = [ort_runner(build.onnx), trt_runner(plan)]
    return compare_runners(build.stage, runners, cases, tolerance_for(build.stage))
