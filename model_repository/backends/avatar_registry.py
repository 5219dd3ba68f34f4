"""Avatar registration and lookup (python backend).

Register: `image` (encoded photo) or `video` (encoded clip) [+ `options` JSON registration
options] -> `avatar_id`. The face is found with mediapipe (and followed through a video's frames),
cropped as Ditto does, and the appearance and motion extractors run by BLS; the result stays in a
bounded server-side cache. Lookup: `avatar_id` -> the cached features, one row per source frame,
which is how the orchestrator opens a session.
"""

from __future__ import annotations

import json

import numpy as np
import triton_python_backend_utils as pb_utils

from ditto_triton.avatar.cache import AvatarCache, avatar_id, check_avatar_id
from ditto_triton.avatar.source import CropOptions, prepare_source, prepare_video_sources, stack_sources
from ditto_triton.model_repository.backends.bls_stages import bls_infer
from ditto_triton.model_repository.backends.requests import RequestError, model_settings, optional_bytes, optional_text
from ditto_triton.model_repository.backends.responses import error_response
from ditto_triton.profiles import get_profile
from ditto_triton.protocol import AVATAR_REGISTRY
from ditto_triton.streaming.avatar_features import AvatarFeatures, features_from_extractors
from ditto_triton.streaming.motion_vector import MOTION_KEYS

EXTRACTOR_OUTPUTS = ["pred", *MOTION_KEYS]
EXTRACTOR_BATCH = 8


class TritonPythonModel:
    def initialize(self, args: dict[str, str]) -> None:
        _, params = model_settings(args)
        self.profile = get_profile(params["profile"])
        self.cache: AvatarCache[AvatarFeatures] = AvatarCache(
            int(params["cache_size"]),
            max_bytes=int(float(params["cache_max_mb"]) * 2**20),
            size_of=lambda features: features.nbytes,
        )

    def execute(self, requests: list) -> list:
        responses = []
        for request in requests:
            try:
                responses.append(self._handle(request))
            except Exception as exc:  # noqa: BLE001 - every failure is this request's answer
                responses.append(error_response(exc, AVATAR_REGISTRY))
        return responses

    def _handle(self, request):
        image, video = optional_bytes(request, "image"), optional_bytes(request, "video")
        if image is not None and video is not None:
            raise RequestError("send either 'image' or 'video', not both")
        if image is not None or video is not None:
            return self._register(
                image if video is None else video, optional_text(request, "options"), video is not None
            )
        key = optional_text(request, "avatar_id")
        if key is None:
            raise RequestError(
                "send 'image' (encoded JPEG/PNG bytes) or 'video' (MP4/WebM/...) to register, or 'avatar_id' to look one up"
            )
        return self._lookup(check_avatar_id(key), request.requested_output_names())

    def _register(self, data: bytes, options_text: str | None, is_video: bool):
        try:
            raw = json.loads(options_text) if options_text else {}
        except json.JSONDecodeError as exc:
            raise RequestError(f"registration options are not valid JSON: {exc}") from exc
        options = CropOptions.from_dict(raw)
        key = avatar_id(data, {**raw, "video": True} if is_video else raw, self.profile.name)
        if key not in self.cache:
            sources = prepare_video_sources(data, options) if is_video else [prepare_source(data, options)]
            stacked = stack_sources(sources, self.profile.appearance.image_size)
            crops = stacked.pop("extractor_input")
            # The `extractors` ensemble runs both networks in one call, with no Python in between.
            parts = [
                bls_infer("extractors", {"image": crops[i : i + EXTRACTOR_BATCH]}, EXTRACTOR_OUTPUTS)
                for i in range(0, crops.shape[0], EXTRACTOR_BATCH)
            ]
            outputs = {name: np.concatenate([p[name] for p in parts]) for name in EXTRACTOR_OUTPUTS}
            self.cache.put(key, features_from_extractors(outputs, **stacked, smooth_k=options.source_smooth_k))
        return pb_utils.InferenceResponse(
            output_tensors=[pb_utils.Tensor("avatar_id", np.array([key.encode()], dtype=object))]
        )

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
        }
        names = requested or list(values)
        return pb_utils.InferenceResponse(
            output_tensors=[pb_utils.Tensor(n, np.ascontiguousarray(values[n])) for n in names]
        )
