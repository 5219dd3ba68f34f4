"""ort stage face_blaze_face: the implementation lives in ditto_triton.model_repository.backends.stage."""

from ditto_triton.model_repository.backends.stage import TritonPythonModel  # noqa: F401
