"""Configs of the two service models (python backend): `avatar_registry` and `orchestrator`.

Generated from the wire contract (`ditto_triton.protocol`: names, dtypes, dims) and the server
limits (`ditto_triton.limits`); the backends that implement them (`backends/avatar_registry.py`,
`backends/orchestrator.py`) read the same declarations.
"""

from __future__ import annotations

import math

from ditto_triton.face_models import REGISTRATION_DITTO, REGISTRATION_MEDIAPIPE, REGISTRATIONS
from ditto_triton.limits import DEFAULT_LIMITS, ServerLimits
from ditto_triton.model_repository import pbtxt
from ditto_triton.model_repository.pbtxt import mc
from ditto_triton.profiles import Profile
from ditto_triton.protocol import (
    AVATAR_REGISTRY,
    AVATAR_REGISTRY_INPUTS,
    AVATAR_REGISTRY_OUTPUTS,
    ORCHESTRATOR,
    ORCHESTRATOR_CONTROLS,
    ORCHESTRATOR_INPUTS,
    ORCHESTRATOR_OUTPUTS,
    PER_PROFILE,
    Tensor,
)
from ditto_triton.stages import stage_specs

SERVICE_MODELS = (AVATAR_REGISTRY, ORCHESTRATOR)

_TYPES = {
    "BYTES": mc.TYPE_STRING,
    "UINT8": mc.TYPE_UINT8,
    "INT16": mc.TYPE_INT16,
    "INT32": mc.TYPE_INT32,
    "INT64": mc.TYPE_INT64,
    "FP32": mc.TYPE_FP32,
    "FP64": mc.TYPE_FP64,
}


def motion_info_size(profile: Profile) -> int:
    """Width of `motion_info`: the motion extractor's per-image outputs concatenated in spec order
    (pitch, yaw, roll, t, exp, scale, kp): 66·3 + 3 + 63 + 1 + 63 = 328."""
    motion = stage_specs(profile)["motion_extractor"]
    return sum(math.prod(t.shape[1:]) for t in motion.outputs)


def _profile_dims(profile: Profile) -> dict[str, list[int]]:
    """What the profile puts where the protocol's dims say PER_PROFILE."""
    return {
        "f_s": list(profile.appearance.feature_shape),
        "motion_info": [motion_info_size(profile)],
        "eye_open": [profile.lmdm.EYE_OPEN_DIM],
        "eye_ball": [profile.lmdm.EYE_BALL_DIM],
        "shape_condition": [3 * profile.motion.num_kp],
    }


def _dims(tensor: Tensor, per_profile: dict[str, list[int]]) -> list[int]:
    if PER_PROFILE not in tensor.dims:
        return list(tensor.dims)
    return [d for d in tensor.dims if d is not PER_PROFILE] + per_profile[tensor.name]


def _add_tensors(
    config: pbtxt.ModelConfig, inputs: tuple[Tensor, ...], outputs: tuple[Tensor, ...], profile: Profile
) -> None:
    per_profile = _profile_dims(profile)
    config.input.extend(
        pbtxt.tensor_input(t.name, _TYPES[t.datatype], _dims(t, per_profile), optional=t.optional) for t in inputs
    )
    config.output.extend(pbtxt.tensor_output(t.name, _TYPES[t.datatype], _dims(t, per_profile)) for t in outputs)


def avatar_registry_config(
    profile: Profile,
    limits: ServerLimits = DEFAULT_LIMITS,
    registration: str = REGISTRATION_MEDIAPIPE,
    eyes: str | None = None,
) -> pbtxt.ModelConfig:
    """Register a source photo or video once (crop, f_s, motion, eyes); look a registered avatar up by id.
    Tensors: `protocol.AVATAR_REGISTRY_INPUTS` / `_OUTPUTS` (no batching). With `registration` "ditto"
    the face models are called by BLS and the eye landmarks come from `eyes` ("task": the
    face_landmarker.task in the model's version directory; "onnx": the BlazeFace + FaceMesh models)."""
    if registration not in REGISTRATIONS or (registration == REGISTRATION_DITTO) != (eyes is not None):
        raise ValueError(f"registration {registration!r} with eyes {eyes!r}: 'ditto' needs eyes, 'mediapipe' none")
    config = pbtxt.ModelConfig(name=AVATAR_REGISTRY, backend="python", max_batch_size=0)
    _add_tensors(config, AVATAR_REGISTRY_INPUTS, AVATAR_REGISTRY_OUTPUTS, profile)
    pbtxt.set_parameters(
        config,
        {
            "profile": profile.name,
            "cache_size": str(limits.avatar_cache_size),
            "cache_max_mb": str(limits.avatar_cache_max_mb),
            "registration": registration,
            **({"eyes": eyes} if eyes else {}),
        },
    )
    config.instance_group.append(pbtxt.instance_group(pbtxt.KIND_CPU, 1))
    return config


_CONTROL_KINDS = {
    "START": dict(kind=mc.ModelSequenceBatching.Control.CONTROL_SEQUENCE_START, bool_false_true=[False, True]),
    "END": dict(kind=mc.ModelSequenceBatching.Control.CONTROL_SEQUENCE_END, bool_false_true=[False, True]),
    "CORRID": dict(kind=mc.ModelSequenceBatching.Control.CONTROL_SEQUENCE_CORRID, data_type=mc.TYPE_UINT64),
}


def _control(name: str) -> mc.ModelSequenceBatching.ControlInput:
    control = mc.ModelSequenceBatching.Control(**_CONTROL_KINDS[name])
    return mc.ModelSequenceBatching.ControlInput(name=name, control=[control])


def _check_limits(max_sessions: int, idle_timeout_s: float, max_request_audio_s: float) -> None:
    for name, value, ok in (
        ("max_sessions", max_sessions, max_sessions >= 1),
        ("idle_timeout_s", idle_timeout_s, idle_timeout_s > 0),
        ("max_request_audio_s", max_request_audio_s, max_request_audio_s > 0),
    ):
        if not ok:
            raise ValueError(
                f"{ORCHESTRATOR}: {name} must be {'>= 1' if name == 'max_sessions' else '> 0'} (got {value})"
            )


def orchestrator_config(
    profile: Profile,
    *,
    max_sessions: int = DEFAULT_LIMITS.max_sessions,
    idle_timeout_s: float = DEFAULT_LIMITS.idle_timeout_s,
    max_request_audio_s: float = DEFAULT_LIMITS.max_request_audio_s,
) -> pbtxt.ModelConfig:
    """The streaming session model: decoupled, one sequence (correlation id) per session, tensors
    `protocol.ORCHESTRATOR_INPUTS` / `_OUTPUTS`.

    The sequence batcher's `oldest` strategy lets one instance serve the sessions, with the control
    inputs START / END (bool) and CORRID (uint64). The orchestrator admits `max_sessions` live
    sessions and answers the START of one more with a BUSY error; the batcher keeps twice as many
    sequence slots so that those STARTs reach it instead of waiting in Triton's backlog (a refused
    sequence holds its slot until the client's END or the idle timeout).
    """
    _check_limits(max_sessions, idle_timeout_s, max_request_audio_s)
    config = pbtxt.ModelConfig(name=ORCHESTRATOR, backend="python", max_batch_size=2 * max_sessions)
    config.model_transaction_policy.decoupled = True
    seq = config.sequence_batching
    seq.max_sequence_idle_microseconds = round(idle_timeout_s * 1e6)
    seq.control_input.extend(_control(name) for name in ORCHESTRATOR_CONTROLS)
    seq.oldest.max_candidate_sequences = 2 * max_sessions
    seq.oldest.max_queue_delay_microseconds = 0
    _add_tensors(config, ORCHESTRATOR_INPUTS, ORCHESTRATOR_OUTPUTS, profile)
    parameters = {
        "idle_timeout_s": f"{idle_timeout_s:g}",
        "max_sessions": str(max_sessions),
        "max_request_audio_s": f"{max_request_audio_s:g}",
        "profile": profile.name,
    }
    pbtxt.set_parameters(config, parameters)
    config.instance_group.append(pbtxt.instance_group(pbtxt.KIND_CPU, 1))
    return config
