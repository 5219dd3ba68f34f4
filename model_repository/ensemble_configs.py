"""Ensemble `config.pbtxt`s from the chains declared in `ditto_triton.ensembles`."""

from __future__ import annotations

from collections.abc import Mapping

from ditto_triton.chains import Chain
from ditto_triton.model_repository import pbtxt
from ditto_triton.stages import StageSpec, TensorSpec


def chain_tensors(chain: Chain, specs: Mapping[str, StageSpec]) -> tuple[list[TensorSpec], list[TensorSpec]]:
    """The chain's input and output tensors, typed and shaped by the stage tensors they bind to.

    A chain input that feeds several stages must have one shape and dtype in all of them."""
    inputs: dict[str, TensorSpec] = {}
    outputs: dict[str, TensorSpec] = {}
    for step in chain.steps:
        spec = specs[step.stage]
        by_name = {t.name: t for t in spec.inputs + spec.outputs}
        for stage_name, chain_name in step.inputs.items():
            if chain_name not in chain.inputs:
                continue
            bound = TensorSpec(chain_name, by_name[stage_name].shape, by_name[stage_name].dtype)
            if inputs.setdefault(chain_name, bound) != bound:
                raise ValueError(
                    f"{chain.name}: the stages disagree on input {chain_name!r} ({inputs[chain_name]} vs {bound})"
                )
        for stage_name, chain_name in step.outputs.items():
            if chain_name in chain.outputs:
                if chain_name in outputs:
                    raise ValueError(f"{chain.name}: output {chain_name!r} is written by two steps")
                outputs[chain_name] = TensorSpec(chain_name, by_name[stage_name].shape, by_name[stage_name].dtype)
    return [inputs[n] for n in chain.inputs], [outputs[n] for n in chain.outputs]


def chain_config(chain: Chain, specs: Mapping[str, StageSpec], max_batch_size: int) -> pbtxt.ModelConfig:
    """An ensemble config for `chain`; `max_batch_size` must not exceed the composing stages' own."""
    if max_batch_size < 1:
        raise ValueError(f"{chain.name}: the stages are batched, max_batch_size must be >= 1 (got {max_batch_size})")
    inputs, outputs = chain_tensors(chain, specs)
    config = pbtxt.ModelConfig(name=chain.name, platform="ensemble", max_batch_size=max_batch_size)
    config.input.extend(pbtxt.spec_input(t, batched=True) for t in inputs)
    config.output.extend(pbtxt.spec_output(t, batched=True) for t in outputs)
    config.ensemble_scheduling.step.extend(
        pbtxt.ensemble_step(step.stage, dict(step.inputs), dict(step.outputs)) for step in chain.steps
    )
    return config
