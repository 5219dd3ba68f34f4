"""The one interface the streaming logic uses to run networks.

`Stages.infer(name, inputs)` takes and returns numpy arrays keyed by the tensor names of
`ditto_triton.stages`. `ditto_triton.export.ort_runtime.OrtStages` runs the exported files with ONNX
Runtime in this process; the Triton orchestrator implements the same protocol with BLS calls. A
runner that can run a whole chain of stages in one call (Triton: an ensemble) also has
`infer_chain(chain, inputs)`; `infer_chain` here uses it when present and composes the chain's
steps through `infer` otherwise.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol

import numpy as np

from ditto_triton.chains import Chain, run_chain


class Stages(Protocol):
    def infer(self, name: str, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]: ...


def infer_chain(stages: Stages, chain: Chain, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    native = getattr(stages, "infer_chain", None)
    if native is not None:
        return native(chain, inputs)
    return run_chain(chain, stages.infer, inputs)
