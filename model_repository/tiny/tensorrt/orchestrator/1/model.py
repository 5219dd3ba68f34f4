"""service model orchestrator: the implementation lives in ditto_triton.model_repository.backends.orchestrator."""

from ditto_triton.model_repository.backends.orchestrator import TritonPythonModel  # noqa: F401
