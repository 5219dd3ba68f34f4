"""service model avatar_registry: the implementation lives in ditto_triton.model_repository.backends.avatar_registry."""

from ditto_triton.model_repository.backends.avatar_registry import TritonPythonModel  # noqa: F401
