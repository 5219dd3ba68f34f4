"""Triton-free request batching for stage models: check, concatenate, run once, split back.

Triton's dynamic batcher hands a python model a list of requests; for a batch-dynamic stage they
are concatenated along axis 0 (in request order), run in one ONNX Runtime call and split back by
each request's batch size. A request whose inputs are missing or of the wrong dtype/shape gets its
own error and is left out of the batch; the others still run.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from ditto_triton.protocol import BadRequest

ANY = -1

Arrays = dict[str, np.ndarray]
RunFn = Callable[[Arrays], Mapping[str, np.ndarray]]


class RequestError(BadRequest):
    """One request's inputs are unusable; the message names the tensor and what was expected."""


class StageRunError(RuntimeError):
    """The model itself failed on a (batch of) request(s)."""


@dataclass(frozen=True)
class WireTensor:
    """A tensor as requests carry it (`wire_shape`, Triton config dims plus the batch axis) and as
    the model takes or returns it (`model_shape`); the two differ only by a config `reshape`.
    -1 is any size; for batched stages the first axis is the batch axis."""

    name: str
    dtype: np.dtype
    wire_shape: tuple[int, ...]
    model_shape: tuple[int, ...]

    def __post_init__(self) -> None:
        object.__setattr__(self, "dtype", np.dtype(self.dtype))


def _matches(shape: tuple[int, ...], pattern: tuple[int, ...]) -> bool:
    return len(shape) == len(pattern) and all(p == ANY or p == s for s, p in zip(shape, pattern))


def _fmt(shape: Sequence[int]) -> str:
    return "[" + ", ".join(str(d) for d in shape) + "]"


def _to_model_shape(array: np.ndarray, spec: WireTensor, batched: bool) -> np.ndarray:
    if spec.wire_shape == spec.model_shape or _matches(array.shape, spec.model_shape):
        return array
    lead = (array.shape[0],) if batched else ()
    return array.reshape(lead + tuple(spec.model_shape[len(lead) :]))


def conform_request(
    arrays: Mapping[str, np.ndarray | None], specs: Sequence[WireTensor], *, batched: bool
) -> tuple[Arrays, int]:
    """Check one request's inputs against `specs`; return them in model shape and the batch size.

    A shape matching either the wire or the model shape is accepted (a backend may see a `reshape`d
    input either way). Batched: every input must have the same leading batch size >= 1; the batch
    size of an unbatched request is 1. Raises `RequestError` naming the first bad tensor.
    """
    unexpected = sorted(set(arrays) - {s.name for s in specs})
    if unexpected:
        raise RequestError(f"unexpected input(s) {unexpected}; the model takes {[s.name for s in specs]}")
    out: Arrays = {}
    batch: int | None = None
    for spec in specs:
        array = arrays.get(spec.name)
        if array is None:
            raise RequestError(f"input {spec.name!r} is missing")
        array = np.asarray(array)
        if array.dtype != spec.dtype:
            raise RequestError(f"input {spec.name!r}: expected dtype {spec.dtype.name}, found {array.dtype.name}")
        if not (_matches(array.shape, spec.wire_shape) or _matches(array.shape, spec.model_shape)):
            raise RequestError(
                f"input {spec.name!r}: expected shape {_fmt(spec.wire_shape)} (-1 = any size), "
                f"found {_fmt(array.shape)}"
            )
        if batched:
            size = array.shape[0]
            if size < 1:
                raise RequestError(f"input {spec.name!r}: empty batch (shape {_fmt(array.shape)})")
            if batch is not None and size != batch:
                raise RequestError(f"input {spec.name!r}: batch size {size} differs from the other inputs' {batch}")
            batch = size
        out[spec.name] = _to_model_shape(array, spec, batched)
    return out, (batch if batched and batch is not None else 1)


def _check_outputs(result: Mapping[str, np.ndarray], outputs: Sequence[WireTensor], total: int | None) -> None:
    for spec in outputs:
        if spec.name not in result:
            raise StageRunError(f"the model returned no output {spec.name!r}")
        if total is not None and (result[spec.name].ndim == 0 or result[spec.name].shape[0] != total):
            raise StageRunError(
                f"output {spec.name!r} has shape {_fmt(result[spec.name].shape)}, expected batch {total}"
            )


def _to_wire(array: np.ndarray, spec: WireTensor, batched: bool) -> np.ndarray:
    if spec.wire_shape == spec.model_shape:
        return array
    lead = (array.shape[0],) if batched else ()
    return array.reshape(lead + tuple(spec.wire_shape[len(lead) :]))


def run_requests(
    requests: Sequence[Mapping[str, np.ndarray | None]],
    inputs: Sequence[WireTensor],
    outputs: Sequence[WireTensor],
    run: RunFn,
    *,
    batched: bool,
) -> list[Arrays | Exception]:
    """Run every request; one result per request, in order: {output name: array} or the exception.

    `run` maps model-shaped inputs to model-shaped outputs. Batched: the valid requests run as one
    call on their concatenation; a failure of that call is reported to each of them. Unbatched:
    one call per request.
    """
    results: list[Arrays | Exception | None] = [None] * len(requests)
    valid: list[tuple[int, Arrays, int]] = []
    for i, request in enumerate(requests):
        try:
            arrays, size = conform_request(request, inputs, batched=batched)
        except RequestError as err:
            results[i] = err
            continue
        valid.append((i, arrays, size))

    if not batched:
        for i, arrays, _ in valid:
            results[i] = _run_one(run, arrays, outputs, None, batched=False)
    elif valid:
        total = sum(size for _, _, size in valid)
        joined = {
            spec.name: np.concatenate([arrays[spec.name] for _, arrays, _ in valid], axis=0)
            if len(valid) > 1
            else valid[0][1][spec.name]
            for spec in inputs
        }
        result = _run_one(run, joined, outputs, total, batched=True)
        offset = 0
        for i, _, size in valid:
            results[i] = (
                result
                if isinstance(result, Exception)
                else {name: array[offset : offset + size] for name, array in result.items()}
            )
            offset += size
    return [r if r is not None else RequestError("request was not processed") for r in results]


def _run_one(
    run: RunFn, arrays: Arrays, outputs: Sequence[WireTensor], total: int | None, *, batched: bool
) -> Arrays | Exception:
    try:
        raw = run(arrays)
        _check_outputs(raw, outputs, total)
    except (StageRunError, RequestError) as err:
        return err
    except Exception as err:  # noqa: BLE001 - any runtime failure becomes that request's error
        return StageRunError(f"{type(err).__name__}: {err}")
    return {spec.name: _to_wire(np.asarray(raw[spec.name]), spec, batched) for spec in outputs}
