"""Triton `ModelConfig` messages: build, print and parse `config.pbtxt` through protobuf.

Every config in the repository is a `model_config_pb2.ModelConfig` built in code and printed with
`google.protobuf.text_format`; nothing writes pbtxt text by hand. The same classes parse the files
back, so a config that does not parse as Triton's own schema never reaches the server.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

import numpy as np
from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2 as mc

from ditto_triton.model_repository import dtypes
from ditto_triton.model_repository.dtypes import triton_type_name
from ditto_triton.stages import DYNAMIC, TensorSpec

CONFIG_NAME = "config.pbtxt"

ModelConfig = mc.ModelConfig

KIND_CPU = mc.ModelInstanceGroup.KIND_CPU
KIND_GPU = mc.ModelInstanceGroup.KIND_GPU


def triton_dtype(dtype: str | np.dtype | type) -> int:
    """Triton `TYPE_*` enum value for a spec dtype name ("float32"), numpy dtype/type or "TYPE_*" name."""
    return mc.DataType.Value(triton_type_name(dtype))


def data_type_name(value: int) -> str:
    """Enum value -> `"TYPE_FP32"`."""
    return mc.DataType.Name(value)


def numpy_dtype(data_type: int | str) -> np.dtype:
    """numpy dtype for a Triton data type (enum value or `"TYPE_*"` name); TYPE_STRING -> object."""
    return dtypes.numpy_dtype(data_type if isinstance(data_type, str) else data_type_name(data_type))


def tensor_input(
    name: str,
    data_type: int,
    dims: Sequence[int],
    *,
    optional: bool = False,
    reshape: Sequence[int] | None = None,
) -> mc.ModelInput:
    """A `ModelInput`; `reshape` (possibly empty) is the shape the model itself sees."""
    message = mc.ModelInput(name=name, data_type=data_type, dims=list(dims), optional=optional)
    if reshape is not None:
        message.reshape.SetInParent()
        message.reshape.shape.extend(reshape)
    return message


def tensor_output(
    name: str, data_type: int, dims: Sequence[int], *, reshape: Sequence[int] | None = None
) -> mc.ModelOutput:
    message = mc.ModelOutput(name=name, data_type=data_type, dims=list(dims))
    if reshape is not None:
        message.reshape.SetInParent()
        message.reshape.shape.extend(reshape)
    return message


def batched_dims(tensor: TensorSpec, batched: bool) -> tuple[list[int], list[int] | None]:
    """(config dims, reshape) for a spec tensor.

    Batched: the leading -1 is Triton's implicit batch axis and is dropped. A tensor that is only
    a batch axis (LMDM's `time_cond`, shape [B]) cannot have empty dims, so it travels as [B, 1]
    and `reshape: []` hands the model [B] (Triton's documented idiom).
    """
    shape = list(tensor.shape)
    if not batched:
        return shape, None
    if not shape or shape[0] != DYNAMIC:
        raise ValueError(f"{tensor.name}: shape {tuple(shape)} has no leading batch axis to batch over")
    dims = shape[1:]
    return (dims, None) if dims else ([1], [])


def spec_input(tensor: TensorSpec, batched: bool) -> mc.ModelInput:
    dims, reshape = batched_dims(tensor, batched)
    return tensor_input(tensor.name, triton_dtype(tensor.dtype), dims, reshape=reshape)


def spec_output(tensor: TensorSpec, batched: bool) -> mc.ModelOutput:
    dims, reshape = batched_dims(tensor, batched)
    return tensor_output(tensor.name, triton_dtype(tensor.dtype), dims, reshape=reshape)


def instance_group(kind: int, count: int = 1) -> mc.ModelInstanceGroup:
    return mc.ModelInstanceGroup(kind=kind, count=count)


def set_parameters(config: mc.ModelConfig, parameters: Mapping[str, object]) -> None:
    """Store settings as string `parameters` (Triton's only parameter type); bools as "true"/"false"."""
    for key, value in parameters.items():
        text = ("true" if value else "false") if isinstance(value, bool) else str(value)
        config.parameters[key].string_value = text


def get_parameters(config: mc.ModelConfig) -> dict[str, str]:
    return {key: p.string_value for key, p in config.parameters.items()}


def ensemble_step(
    model_name: str, input_map: Mapping[str, str], output_map: Mapping[str, str]
) -> mc.ModelEnsembling.Step:
    """One ensemble step: {model tensor: ensemble tensor} for inputs and outputs; latest version."""
    step = mc.ModelEnsembling.Step(model_name=model_name, model_version=-1)
    for key, value in input_map.items():
        step.input_map[key] = value
    for key, value in output_map.items():
        step.output_map[key] = value
    return step


def full_shape(config: mc.ModelConfig, tensor: mc.ModelInput | mc.ModelOutput, *, as_model: bool) -> tuple[int, ...]:
    """The whole shape of a config tensor, -1 for the batch axis when max_batch_size > 0.

    With `as_model` the `reshape` (what the model sees) replaces `dims` (what requests carry).
    """
    dims = list(tensor.reshape.shape) if as_model and tensor.HasField("reshape") else list(tensor.dims)
    return tuple(([-1] if config.max_batch_size > 0 else []) + dims)


def to_text(config: mc.ModelConfig) -> str:
    return text_format.MessageToString(config)


def from_text(text: str, *, source: str = "<string>") -> mc.ModelConfig:
    config = mc.ModelConfig()
    try:
        text_format.Parse(text, config)
    except text_format.ParseError as err:
        raise ValueError(f"{source}: not a valid Triton model config: {err}") from err
    return config


def write_config(config: mc.ModelConfig, model_dir: Path) -> Path:
    """Write `<model_dir>/config.pbtxt`; returns its path."""
    path = Path(model_dir) / CONFIG_NAME
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(to_text(config))
    return path


def read_config(path: Path) -> mc.ModelConfig:
    """Parse a `config.pbtxt` file (or a model directory holding one)."""
    path = Path(path)
    if path.is_dir():
        path = path / CONFIG_NAME
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no model config")
    return from_text(path.read_text(), source=str(path))


def names(tensors: Iterable[mc.ModelInput | mc.ModelOutput]) -> list[str]:
    return [t.name for t in tensors]
