"""Fixed DAGs of stages, declared once: Triton runs them as ensembles (`ensembles/`), the in-process
runner composes the same steps (`run_chain`). No Triton import. The chains themselves are declared
in `ditto_triton.ensembles`.

A chain maps its own tensor names through steps; each step names a stage and maps the stage's
inputs from chain tensors and the stage's outputs to chain tensors.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class ChainStep:
    stage: str
    inputs: Mapping[str, str]  # stage input -> chain tensor
    outputs: Mapping[str, str]  # stage output -> chain tensor


@dataclass(frozen=True)
class Chain:
    name: str
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    steps: tuple[ChainStep, ...]

    @property
    def stages(self) -> tuple[str, ...]:
        return tuple(step.stage for step in self.steps)


Infer = Callable[[str, dict[str, np.ndarray]], dict[str, np.ndarray]]


def run_chain(chain: Chain, infer: Infer, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Run `chain` step by step through `infer(stage, inputs)`; returns the chain's outputs."""
    missing = [name for name in chain.inputs if name not in inputs]
    if missing:
        raise ValueError(f"{chain.name}: missing input(s) {missing}")
    tensors = dict(inputs)
    for step in chain.steps:
        out = infer(step.stage, {stage_in: tensors[name] for stage_in, name in step.inputs.items()})
        tensors.update({name: out[stage_out] for stage_out, name in step.outputs.items()})
    return {name: tensors[name] for name in chain.outputs}
