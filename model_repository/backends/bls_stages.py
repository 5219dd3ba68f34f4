"""`Stages` implemented with Triton BLS calls: the session logic runs unchanged inside the server."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import triton_python_backend_utils as pb_utils

from ditto_triton.chains import Chain
from ditto_triton.profiles import Profile
from ditto_triton.stages import stage_specs


class StageCallError(RuntimeError):
    """A stage model answered a BLS call with an error."""


class BlsStages:
    def __init__(self, profile: Profile) -> None:
        specs = stage_specs(profile)
        self._outputs = {name: spec.output_names for name, spec in specs.items()}
        # A batch-only tensor (LMDM's time_cond, shape (B,)) is declared to Triton as dims [1] with an
        # empty reshape, so on the wire it travels as (B, 1).
        self._batch_only = {
            name: {t.name for t in spec.inputs if spec.batch_dynamic and len(t.shape) == 1}
            for name, spec in specs.items()
        }

    def infer(self, name: str, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        wire = {k: (v.reshape(-1, 1) if k in self._batch_only[name] else v) for k, v in inputs.items()}
        return bls_infer(name, wire, self._outputs[name])

    def infer_chain(self, chain: Chain, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """The whole chain as one call to its ensemble (one BLS round trip instead of one per step)."""
        return bls_infer(chain.name, dict(inputs), list(chain.outputs))


def bls_infer(model: str, inputs: dict[str, np.ndarray], outputs: list[str]) -> dict[str, np.ndarray]:
    request = pb_utils.InferenceRequest(
        model_name=model,
        inputs=[pb_utils.Tensor(k, np.ascontiguousarray(v)) for k, v in inputs.items()],
        requested_output_names=outputs,
    )
    response = request.exec()
    if response.has_error():
        raise StageCallError(f"{model}: {response.error().message()}")
    return {name: pb_utils.get_output_tensor_by_name(response, name).as_numpy() for name in outputs}
