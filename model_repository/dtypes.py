"""numpy dtype <-> Triton data type names ("TYPE_FP32"), without importing tritonclient.

Kept apart from `pbtxt.py` so that python-backend stage processes, which read their config as
JSON, need neither protobuf nor gRPC.
"""

from __future__ import annotations

import numpy as np

# numpy dtype name -> Triton data type name. Strings are numpy object/bytes arrays on the Python side.
_NUMPY_TO_TRITON: dict[str, str] = {
    "bool": "TYPE_BOOL",
    "uint8": "TYPE_UINT8",
    "uint16": "TYPE_UINT16",
    "uint32": "TYPE_UINT32",
    "uint64": "TYPE_UINT64",
    "int8": "TYPE_INT8",
    "int16": "TYPE_INT16",
    "int32": "TYPE_INT32",
    "int64": "TYPE_INT64",
    "float16": "TYPE_FP16",
    "float32": "TYPE_FP32",
    "float64": "TYPE_FP64",
    "object": "TYPE_STRING",
}
_TRITON_TO_NUMPY: dict[str, str] = {v: k for k, v in _NUMPY_TO_TRITON.items()}


def triton_type_name(dtype: str | np.dtype | type) -> str:
    """`"float32"`, `np.float32` or `np.dtype("float32")` -> `"TYPE_FP32"`; bytes/str/object -> TYPE_STRING."""
    if isinstance(dtype, str) and dtype.startswith("TYPE_"):
        if dtype not in _TRITON_TO_NUMPY:
            raise ValueError(f"unknown or unsupported Triton data type {dtype!r}")
        return dtype
    np_dtype = np.dtype(dtype)
    key = "object" if np_dtype.kind in "SOU" else np_dtype.name
    try:
        return _NUMPY_TO_TRITON[key]
    except KeyError:
        raise ValueError(f"no Triton data type for numpy dtype {np_dtype.name!r}") from None


def numpy_dtype(triton_name: str) -> np.dtype:
    """`"TYPE_FP32"` -> `np.dtype("float32")`; TYPE_STRING -> object."""
    try:
        return np.dtype(_TRITON_TO_NUMPY[triton_name])
    except KeyError:
        raise ValueError(f"no numpy dtype for Triton data type {triton_name!r}") from None
