"""The one way a backend answers a failed request.

A `BadRequest` (the caller must fix it: bad tensors, options, audio, an unknown avatar) goes back
verbatim as INVALID_ARG, a refused session (`BUSY`) as UNAVAILABLE, a failed stage call as INTERNAL
"a stage failed: ..."; anything else is logged and answered INTERNAL "internal error: ...", so one
request's failure never takes the model down.
"""

from __future__ import annotations

import triton_python_backend_utils as pb_utils

from ditto_triton.model_repository.backends.bls_stages import StageCallError
from ditto_triton.protocol import BUSY, BadRequest


def error_message(exc: BaseException, model: str) -> tuple[str, int]:
    """(message, TritonError code) for `exc`; unexpected errors are logged under `model`."""
    if isinstance(exc, BadRequest):
        code = pb_utils.TritonError.UNAVAILABLE if str(exc).startswith(BUSY) else pb_utils.TritonError.INVALID_ARG
        return str(exc), code
    if isinstance(exc, StageCallError):
        return f"a stage failed: {exc}", pb_utils.TritonError.INTERNAL
    pb_utils.Logger.log_error(f"[ditto] {model}: {exc!r}")
    return f"internal error: {exc}", pb_utils.TritonError.INTERNAL


def error_response(exc: BaseException | str, model: str, code: int | None = None) -> pb_utils.InferenceResponse:
    """An error response for an exception (classified by `error_message`) or a ready message."""
    if isinstance(exc, BaseException):
        message, code = error_message(exc, model)
    else:
        message, code = exc, pb_utils.TritonError.INTERNAL if code is None else code
    return pb_utils.InferenceResponse(output_tensors=[], error=pb_utils.TritonError(message, code))
