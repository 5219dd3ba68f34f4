"""Reading typed values out of python-backend requests (string, scalar and audio tensors)."""

from __future__ import annotations

import json

import numpy as np
import triton_python_backend_utils as pb_utils

from ditto_triton.protocol import BadRequest


class RequestError(BadRequest):
    """A request the client must fix; the message goes back to the client as is."""


def optional(request, name: str) -> np.ndarray | None:
    tensor = pb_utils.get_input_tensor_by_name(request, name)
    return None if tensor is None else tensor.as_numpy()


def optional_text(request, name: str) -> str | None:
    value = optional(request, name)
    if value is None:
        return None
    item = value.reshape(-1)[0]
    return item.decode("utf-8", errors="strict") if isinstance(item, bytes) else str(item)


def optional_bytes(request, name: str) -> bytes | None:
    value = optional(request, name)
    if value is None:
        return None
    item = value.reshape(-1)[0]
    return bytes(item) if not isinstance(item, str) else item.encode()


def flag(request, name: str) -> bool:
    value = optional(request, name)
    return bool(value is not None and value.reshape(-1)[0])


def model_settings(args: dict[str, str]) -> tuple[dict, dict[str, str]]:
    """(model config, its string parameters) from the arguments Triton passes to `initialize`."""
    config = json.loads(args["model_config"])
    return config, {k: v["string_value"] for k, v in config.get("parameters", {}).items()}
