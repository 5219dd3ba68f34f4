"""ort stage hubert: the implementation lives in ditto_triton.model_repository.backends.stage."""

from ditto_triton.model_repository.backends.stage import TritonPythonModel  # noqa: F401
