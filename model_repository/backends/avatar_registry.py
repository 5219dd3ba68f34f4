"""Avatar registration and lookup (python backend).

Register: `image` (encoded photo), `video` (encoded clip) [+ `options` JSON registration options]
or `avatar_file` (an .npz from ditto-register) -> `avatar_id`, `registration`. The config's
`registration` parameter says how the face is found: "ditto", Ditto's released face models as Triton
models called by BLS (eye landmarks from the face_landmarker.task beside this file, or the BlazeFace
+ FaceMesh models, by the `eyes` parameter); "mediapipe", MediaPipe in this process (the path for
synthetic weights). The appearance and motion extractors run by BLS; the result stays in a bounded
server-side cache. Lookup: `avatar_id` -> the cached features, one row per source frame, which is
how the orchestrator opens a session.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import triton_python_backend_utils as pb_utils

from ditto_triton.avatar.cache import AvatarCache, avatar_id, check_avatar_id
from ditto_triton.avatar.ditto_registration import DittoFaces
from ditto_triton.avatar.face import warm_up_face_models
from ditto_triton.avatar.face_landmarker import warm_up_landmarker
from ditto_triton.avatar.source import (
    CropOptions,
)
from ditto_triton.face_models import EYES_TASK, FACE_LANDMARKER_TASK, FACE_MODELS, REGISTRATION_DITTO
from ditto_triton.model_repository.backends.bls_stages import bls_infer
from ditto_triton.model_repository.backends.requests import RequestError, model_settings, optional_bytes, optional_text
from ditto_triton.model_repository.backends.responses import error_response
from ditto_triton.profiles import get_profile
from ditto_triton.protocol import AVATAR_REGISTRY
from ditto_triton.streaming.avatar_features import AvatarFeatures
from ditto_triton.streaming.motion_vector import MOTION_KEYS
from ditto_triton.streaming.registered_avatar import RegisteredAvatar, register_source

EXTRACTOR_OUTPUTS = ["pred", *MOTION_KEYS]
EXTRACTOR_BATCH = 8
SOURCES = ("image", "video", "avatar_file")


def _extract(crops: np.ndarray) -> dict[str, np.ndarray]:
    """Both extractors over the crops: the `extractors` ensemble, one call per batch, no Python in between."""
    parts = [
        bls_infer("extractors", {"image": crops[i : i + EXTRACTOR_BATCH]}, EXTRACTOR_OUTPUTS)
        for i in range(0, crops.shape[0], EXTRACTOR_BATCH)
    ]
    return {name: np.concatenate([p[name] for p in parts]) for name in EXTRACTOR_OUTPUTS}


def _face_infer(model: str, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    return bls_infer(model, inputs, FACE_MODELS[model].spec.output_names)


class TritonPythonModel:
    def initialize(self, args: dict[str, str]) -> None:
        _, params = model_settings(args)
        self.profile = get_profile(params["profile"])
        self.cache: AvatarCache[AvatarFeatures] = AvatarCache(
            int(params["cache_size"]),
            max_bytes=int(float(params["cache_max_mb"]) * 2**20),
            size_of=lambda features: features.nbytes,
        )
        self.faces = None
        if params.get("registration") == REGISTRATION_DITTO:
            eyes = params["eyes"]
            task = Path(args["model_repository"]) / args["model_version"] / Path(FACE_LANDMARKER_TASK).name
            self.faces = DittoFaces(_face_infer, eyes, task if eyes == EYES_TASK else None)
        self._warm_up()

    def _warm_up(self) -> None:
        """Load the face graphs that run in this process now, not on the first registration (Ditto's
        ONNX face models are separate Triton models, warmed by their own `model_warmup`)."""
        if self.faces is None:
            warm_up_face_models()
        elif self.faces.task_file is not None:
            warm_up_landmarker(self.faces.task_file)

    def execute(self, requests: list) -> list:
        responses = []
        for request in requests:
            try:
                responses.append(self._handle(request))
            except Exception as exc:  # noqa: BLE001 - every failure is this request's answer
                responses.append(error_response(exc, AVATAR_REGISTRY))
        return responses

    def _handle(self, request):
        sent = {name: data for name in SOURCES if (data := optional_bytes(request, name)) is not None}
        if len(sent) > 1:
            raise RequestError(f"send one of 'image', 'video' or 'avatar_file', not {' and '.join(sent)}")
        if sent:
            ((kind, data),) = sent.items()
            return self._register(kind, data, optional_text(request, "options"))
        key = optional_text(request, "avatar_id")
        if key is None:
            raise RequestError(
                "send 'image' (encoded JPEG/PNG bytes), 'video' (MP4/WebM/...) or 'avatar_file' (.npz from "
                "ditto-register) to register, or 'avatar_id' to look one up"
            )
        return self._lookup(check_avatar_id(key), request.requested_output_names())

    def _register(self, kind: str, data: bytes, options_text: str | None):
        try:
            raw = json.loads(options_text) if options_text else {}
        except json.JSONDecodeError as exc:
            raise RequestError(f"registration options are not valid JSON: {exc}") from exc
        if kind == "avatar_file" and raw:
            raise RequestError("an avatar file is registered as it is: send no 'options' with it")
        options = CropOptions.from_dict(raw)
        salt = {**raw, kind: True} if kind != "image" else raw
        key = avatar_id(data, salt, self.profile.name)
        if key not in self.cache:
            if kind == "avatar_file":
                registered = RegisteredAvatar.load(data, self.profile)
            else:
                registered = self._registered(data, options, kind == "video")
            self.cache.put(key, registered.features())
        return pb_utils.InferenceResponse(
            output_tensors=[
                pb_utils.Tensor("avatar_id", np.array([key.encode()], dtype=object)),
                pb_utils.Tensor("registration", np.array([self.cache.get(key).registration.encode()], dtype=object)),
            ]
        )

    def _registered(self, data: bytes, options: CropOptions, is_video: bool) -> RegisteredAvatar:
        return register_source(data, options, is_video, self.faces, self.profile, _extract)

    def _lookup(self, key: str, requested: list[str]):
        features = self.cache.get(key)
        values = {
            "avatar_id": np.array([key.encode()], dtype=object),
            "source_rgb": features.source_rgb,
            "crop_to_source": features.crop_to_source,
            "f_s": features.f_s,
            "motion_info": features.motion_info,
            "eye_open": features.eye_open,
            "eye_ball": features.eye_ball,
            "shape_condition": features.shape_condition,
            "landmarks": features.landmarks,
            "registration": np.array([features.registration.encode()], dtype=object),
        }
        names = requested or list(values)
        return pb_utils.InferenceResponse(
            output_tensors=[pb_utils.Tensor(n, np.ascontiguousarray(values[n])) for n in names]
        )
