"""Check a rendered repository against the exported ONNX files and itself.

- every stage of the export has a model whose config matches its ONNX file: input/output names
  and order, dtypes and dims (the implicit batch axis when max_batch_size > 0, `reshape`s);
- python-ort/onnxruntime models hold the very ONNX file of the export (same size and sha256), torch
  models the very checkpoint it was exported from, tensorrt models a plan or the README.txt on
  building one;
- every ensemble step calls a model that exists, maps only tensors that model has (all its required
  inputs), feeds it tensors of the right dtype and shape, and every ensemble output is produced.

All problems are collected and raised together as one `RepositoryError`, each line naming the
model and tensor.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

import onnx
from onnx.helper import tensor_dtype_to_np_dtype

from ditto_triton.export.onnx_io import onnx_io
from ditto_triton.manifest import read_manifest, sha256_file
from ditto_triton.model_repository import pbtxt
from ditto_triton.stages import DYNAMIC

Shape = tuple[int, ...]


class RepositoryError(ValueError):
    """A rendered repository disagrees with its ONNX files or with itself."""


def _onnx_dtypes(path: Path) -> dict[str, str]:
    """{tensor name: numpy dtype name} of the graph's inputs and outputs."""
    graph = onnx.load(str(path), load_external_data=False).graph
    return {
        v.name: tensor_dtype_to_np_dtype(v.type.tensor_type.elem_type).name
        for v in list(graph.input) + list(graph.output)
    }


def _fmt(shape: Shape) -> str:
    return "[" + ", ".join(str(d) for d in shape) + "]"


def _compare_tensors(
    model: str,
    kind: str,
    config: pbtxt.ModelConfig,
    tensors: list,
    onnx_shapes: Mapping[str, Shape],
    onnx_dtypes: Mapping[str, str],
    problems: list[str],
) -> None:
    config_names = pbtxt.names(tensors)
    if config_names != list(onnx_shapes):
        problems.append(f"{model}: config {kind} {config_names} != ONNX {kind} {list(onnx_shapes)} (names and order)")
    for tensor in tensors:
        if tensor.name not in onnx_shapes:
            continue
        found_dtype = pbtxt.numpy_dtype(tensor.data_type).name
        if found_dtype != onnx_dtypes[tensor.name]:
            problems.append(
                f"{model}: {kind[:-1]} {tensor.name!r} is {pbtxt.data_type_name(tensor.data_type)} in the config, "
                f"{onnx_dtypes[tensor.name]} in the ONNX file"
            )
        shape = pbtxt.full_shape(config, tensor, as_model=True)
        want = onnx_shapes[tensor.name]
        if shape != want:
            problems.append(
                f"{model}: {kind[:-1]} {tensor.name!r} has shape {_fmt(shape)} in the config "
                f"(max_batch_size {config.max_batch_size}, dims {_fmt(tuple(tensor.dims))}), "
                f"ONNX has {_fmt(want)}"
            )
        elif config.max_batch_size > 0 and (not want or want[0] != DYNAMIC):
            problems.append(f"{model}: {kind[:-1]} {tensor.name!r} is batched in the config but ONNX axis 0 is fixed")


def _same_file(a: Path, b: Path, sha256: str | None) -> bool:
    if os.path.samefile(a, b):
        return True
    if a.stat().st_size != b.stat().st_size:
        return False
    return sha256_file(a) == (sha256 or sha256_file(b))


def validate_stage(
    model_dir: Path, onnx_path: Path, *, sha256: str | None = None, weights_sha256: str | None = None
) -> list[str]:
    """Problems of one stage model directory against its export ONNX file (and, for a torch stage,
    the checkpoint's sha256 recorded in the manifest); empty when fine."""
    problems: list[str] = []
    model = model_dir.name
    config = pbtxt.read_config(model_dir)
    if config.name and config.name != model:
        problems.append(f"{model}: config name {config.name!r} differs from its directory name")
    ins, outs = onnx_io(onnx_path)
    dtypes = _onnx_dtypes(onnx_path)
    _compare_tensors(model, "inputs", config, list(config.input), ins, dtypes, problems)
    _compare_tensors(model, "outputs", config, list(config.output), outs, dtypes, problems)
    params = pbtxt.get_parameters(config)
    if config.backend == "python" and params.get("runner") == "torch":
        copy = model_dir / "1" / params.get("checkpoint_file", "model.pth")
        if not copy.is_file():
            problems.append(f"{model}: {copy} is missing")
        elif weights_sha256 is not None and sha256_file(copy) != weights_sha256:
            problems.append(f"{model}: {copy} is not the checkpoint the export was made from (sha256 differs)")
    elif config.backend == "python" or config.platform == "onnxruntime_onnx":
        if config.backend == "python":
            artifact = params.get("onnx_file", "model.onnx")
        else:
            artifact = config.default_model_filename or "model.onnx"
        copy = model_dir / "1" / artifact
        if not copy.is_file():
            problems.append(f"{model}: {copy} is missing")
        elif not _same_file(copy, onnx_path, sha256):
            problems.append(f"{model}: {copy} is not the exported {onnx_path.name} (size or sha256 differ)")
    elif config.platform == "tensorrt_plan":
        version = model_dir / "1"
        if not (version / "model.plan").is_file() and not (version / "README.txt").is_file():
            problems.append(f"{model}: {version} has neither model.plan nor the README.txt saying how to build it")
    return problems


def _ensemble_problems(name: str, config: pbtxt.ModelConfig, configs: Mapping[str, pbtxt.ModelConfig]) -> list[str]:
    problems: list[str] = []
    # Ensemble tensor -> (dtype, full shape), starting from the ensemble's own inputs.
    known: dict[str, tuple[int, Shape]] = {
        t.name: (t.data_type, pbtxt.full_shape(config, t, as_model=False)) for t in config.input
    }
    steps = list(config.ensemble_scheduling.step)
    if not steps:
        problems.append(f"{name}: ensemble has no steps")
    pending = list(steps)
    # Steps may be listed in any order; resolve them as their inputs become known.
    while pending:
        ready = [s for s in pending if all(v in known for v in s.input_map.values())]
        if not ready:
            for step in pending:
                missing = sorted(v for v in step.input_map.values() if v not in known)
                problems.append(f"{name}: step {step.model_name!r} reads {missing}, which no input or step provides")
            break
        for step in ready:
            pending.remove(step)
            problems += _step_problems(name, config, step, configs, known)
    consumed = {v for step in steps for v in step.input_map.values()} | set(pbtxt.names(config.output))
    for step in steps:
        unused = sorted(v for v in step.output_map.values() if v not in consumed)
        if unused:
            problems.append(f"{name}: step {step.model_name!r} produces {unused}, which nothing reads (miswired?)")
    for out in config.output:
        if out.name not in known:
            problems.append(f"{name}: output {out.name!r} is produced by no step")
            continue
        dtype, shape = known[out.name]
        want = pbtxt.full_shape(config, out, as_model=False)
        if dtype != out.data_type or shape != want:
            problems.append(
                f"{name}: output {out.name!r} is declared {pbtxt.data_type_name(out.data_type)} {_fmt(want)}, "
                f"its step produces {pbtxt.data_type_name(dtype)} {_fmt(shape)}"
            )
    return problems


def _step_problems(
    name: str,
    config: pbtxt.ModelConfig,
    step,
    configs: Mapping[str, pbtxt.ModelConfig],
    known: dict[str, tuple[int, Shape]],
) -> list[str]:
    problems: list[str] = []
    target = configs.get(step.model_name)
    where = f"{name}: step {step.model_name!r}"
    if target is None:
        return [f"{where} calls a model that is not in the repository"]
    if (config.max_batch_size > 0) != (target.max_batch_size > 0) or config.max_batch_size > target.max_batch_size:
        problems.append(
            f"{where}: ensemble max_batch_size {config.max_batch_size} does not fit the model's {target.max_batch_size}"
        )
    inputs = {t.name: t for t in target.input}
    outputs = {t.name: t for t in target.output}
    for key, value in step.input_map.items():
        tensor = inputs.get(key)
        if tensor is None:
            problems.append(f"{where}: maps input {key!r}, the model's inputs are {list(inputs)}")
            continue
        dtype, shape = known[value]
        want = pbtxt.full_shape(target, tensor, as_model=False)
        if dtype != tensor.data_type or shape != want:
            problems.append(
                f"{where}: input {key!r} wants {pbtxt.data_type_name(tensor.data_type)} {_fmt(want)}, "
                f"gets {value!r} = {pbtxt.data_type_name(dtype)} {_fmt(shape)}"
            )
    unmapped = [n for n, t in inputs.items() if n not in step.input_map and not t.optional]
    if unmapped:
        problems.append(f"{where}: required input(s) {unmapped} are not mapped")
    for key, value in step.output_map.items():
        tensor = outputs.get(key)
        if tensor is None:
            problems.append(f"{where}: maps output {key!r}, the model's outputs are {list(outputs)}")
            continue
        if value in known:
            problems.append(f"{where}: output {key!r} -> {value!r}, a tensor that is already defined")
        known[value] = (tensor.data_type, pbtxt.full_shape(target, tensor, as_model=False))
    return problems


def validate_repository(repo_dir: Path, export_dir: Path) -> None:
    """Raise `RepositoryError` listing every problem of `repo_dir` against the export in `export_dir`."""
    repo_dir, export_dir = Path(repo_dir), Path(export_dir)
    manifest = read_manifest(export_dir)
    problems: list[str] = []
    configs: dict[str, pbtxt.ModelConfig] = {}
    for model_dir in sorted(p for p in repo_dir.iterdir() if p.is_dir() and not p.name.startswith(".")):
        try:
            configs[model_dir.name] = pbtxt.read_config(model_dir)
        except (FileNotFoundError, ValueError) as err:
            problems.append(f"{model_dir.name}: {err}")
    for stage, entry in manifest["stages"].items():
        if stage not in configs:
            problems.append(f"{stage}: exported stage has no model in {repo_dir}")
            continue
        problems += validate_stage(
            repo_dir / stage,
            export_dir / entry["file"],
            sha256=entry.get("sha256"),
            weights_sha256=entry.get("weights", {}).get("sha256"),
        )
    for name, config in configs.items():
        if config.platform == "ensemble":
            problems += _ensemble_problems(name, config, configs)
        elif config.backend == "python" and not (repo_dir / name / "1" / "model.py").is_file():
            problems.append(f"{name}: python model without 1/model.py")
    if problems:
        raise RepositoryError(f"{repo_dir}: {len(problems)} problem(s):\n  " + "\n  ".join(problems))
