"""`model_warmup` for every network model: Triton runs one zero-filled request through each model at
load, before it reports ready, so the first real session does not pay ONNX Runtime's, TensorRT's or
PyTorch's first-run costs (arena allocation, kernel selection, lazy initialisation).

Ensembles need none (their steps are warmed); the python service models warm themselves up in
`initialize` (backends/warm_start.py). A dynamic dim other than the batch axis takes the size a
streaming session sends: HuBERT's `input_values` gets one audio window.
"""

from __future__ import annotations

from tritonclient.grpc import model_config_pb2 as mc

from ditto_triton.streaming.audio import WINDOW_SAMPLES

WARMUP_NAME = "zero_request"
# The size a warm-up request gives a dynamic, non-batch dim, by input name.
DYNAMIC_DIM_SIZES = {"input_values": WINDOW_SAMPLES}


def _concrete_dims(tensor: mc.ModelInput, model: str) -> list[int]:
    dims = list(tensor.dims)
    if -1 not in dims:
        return dims
    if tensor.name not in DYNAMIC_DIM_SIZES:
        raise ValueError(f"{model}: input {tensor.name!r} has a dynamic dim and no warm-up size")
    return [DYNAMIC_DIM_SIZES[tensor.name] if d == -1 else d for d in dims]


def add_zero_warmup(config: mc.ModelConfig) -> None:
    """Append one batch-1 request of zeros for every input of `config` (unbatched models: batch 1
    with their full dims, as Triton requires)."""
    warmup = config.model_warmup.add(name=WARMUP_NAME, batch_size=1, count=1)
    for tensor in config.input:
        warmup.inputs[tensor.name].data_type = tensor.data_type
        warmup.inputs[tensor.name].dims.extend(_concrete_dims(tensor, config.name))
        warmup.inputs[tensor.name].zero_data = True
