"""Triton ensembles, declared as `ditto_triton.chains.Chain`s: fixed DAGs over the stage models, no Python
in the path. `ditto_triton.model_repository.ensemble_configs` turns each one into its `config.pbtxt`; the
in-process runner composes the same steps with `ditto_triton.chains.run_chain`."""

from ditto_triton.ensembles.extractors import EXTRACTORS
from ditto_triton.ensembles.render_chain import RENDER_CHAIN, UNSTITCHED_CHAIN

ENSEMBLES = (RENDER_CHAIN, EXTRACTORS)

__all__ = ["ENSEMBLES", "EXTRACTORS", "RENDER_CHAIN", "UNSTITCHED_CHAIN"]
