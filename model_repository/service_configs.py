"""Configs of the two service models (python backend): `avatar_registry` and `orchestrator`.

These are contracts between the repository and the backends that implement them
(`backends/avatar_registry.py`, `backends/orchestrator.py`): names, dtypes and dims here are what
those `model.py` files read and write.
"""

from __future__ import annotations

import math

from ditto_triton.model_repository import pbtxt
from ditto_triton.model_repository.pbtxt import mc
from ditto_triton.profiles import Profile
from ditto_triton.stages import stage_specs

AVATAR_REGISTRY = "avatar_registry"
ORCHESTRATOR = "orchestrator"
SERVICE_MODELS = (AVATAR_REGISTRY, ORCHESTRATOR)

_STR, _U8, _I16, _I32, _I64, _F32, _F64 = (
    mc.TYPE_STRING, mc.TYPE_UINT8, mc.TYPE_INT16, mc.TYPE_INT32, mc.TYPE_INT64, mc.TYPE_FP32, mc.TYPE_FP64,
)


def motion_info_size(profile: Profile) -> int:
    """Width of `motion_info`: the motion extractor's per-image outputs concatenated in spec order
    (pitch, yaw, roll, t, exp, scale, kp): 66·3 + 3 + 63 + 1 + 63 = 328."""
    motion = stage_specs(profile)["motion_extractor"]
    return sum(math.prod(t.shape[1:]) for t in motion.outputs)


def avatar_registry_config(profile: Profile) -> pbtxt.ModelConfig:
    """Register a source photo or video once (crop, f_s, motion, eyes); look a registered avatar up by id.

    Inputs (all optional, [1] each, no batching): `image` encoded image bytes or `video` encoded
    video bytes, `avatar_id`, `options` (JSON). Outputs, one row per source frame (n = 1 for a
    photo): `avatar_id`, `source_rgb` n×H×W×3 uint8, `crop_to_source` n×3×3 affine, `f_s`
    n×C×D×H×W, `motion_info` n×328, `eye_open` n×2, `eye_ball` n×6.
    """
    config = pbtxt.ModelConfig(name=AVATAR_REGISTRY, backend="python", max_batch_size=0)
    config.input.extend(
        pbtxt.tensor_input(name, _STR, [1], optional=True) for name in ("image", "video", "avatar_id", "options")
    )
    config.output.extend(
        [
            pbtxt.tensor_output("avatar_id", _STR, [1]),
            pbtxt.tensor_output("source_rgb", _U8, [-1, -1, -1, 3]),
            pbtxt.tensor_output("crop_to_source", _F32, [-1, 3, 3]),
            pbtxt.tensor_output("f_s", _F32, [-1, *profile.appearance.feature_shape]),
            pbtxt.tensor_output("motion_info", _F32, [-1, motion_info_size(profile)]),
            pbtxt.tensor_output("eye_open", _F32, [-1, profile.lmdm.EYE_OPEN_DIM]),
            pbtxt.tensor_output("eye_ball", _F32, [-1, profile.lmdm.EYE_BALL_DIM]),
        ]
    )
    pbtxt.set_parameters(config, {"profile": profile.name, "cache_size": "64", "cache_max_mb": "4096"})
    config.instance_group.append(pbtxt.instance_group(pbtxt.KIND_CPU, 1))
    return config


def _control(name: str, kind: int, **fields: object) -> mc.ModelSequenceBatching.ControlInput:
    control = mc.ModelSequenceBatching.Control(kind=kind, **fields)
    return mc.ModelSequenceBatching.ControlInput(name=name, control=[control])


def orchestrator_config(
    profile: Profile, *, max_sessions: int = 16, idle_timeout_s: float = 60.0, max_request_audio_s: float = 60.0
) -> pbtxt.ModelConfig:
    """The streaming session model: decoupled, one sequence (correlation id) per session.

    Each request carries an audio chunk (`audio` float32 or `audio_int16`, at `sample_rate`) and
    optional per-frame `controls` (JSON), the first one also `avatar_id` and `options` (and, when the
    avatar may be unknown on this replica, `avatar_image` or `avatar_video` + `avatar_options`); the model answers with zero or more frames
    (`frame` flat uint8 H·W·3, `frame_shape`, `frame_index`, `pts_s`). The sequence batcher's
    `oldest` strategy lets one instance serve the sessions, with the control inputs START / END
    (bool) and CORRID (uint64). The orchestrator admits `max_sessions` live sessions and answers
    the START of one more with a "resource exhausted" error; the batcher keeps twice as many
    sequence slots so that those STARTs reach it instead of waiting in Triton's backlog (a refused
    sequence holds its slot until the client's END or the idle timeout).
    """
    if max_sessions < 1:
        raise ValueError(f"{ORCHESTRATOR}: max_sessions must be >= 1 (got {max_sessions})")
    if max_request_audio_s <= 0:
        raise ValueError(f"{ORCHESTRATOR}: max_request_audio_s must be > 0 (got {max_request_audio_s})")
    if idle_timeout_s <= 0:
        raise ValueError(f"{ORCHESTRATOR}: idle_timeout_s must be > 0 (got {idle_timeout_s})")
    config = pbtxt.ModelConfig(name=ORCHESTRATOR, backend="python", max_batch_size=2 * max_sessions)
    config.model_transaction_policy.decoupled = True
    seq = config.sequence_batching
    seq.max_sequence_idle_microseconds = round(idle_timeout_s * 1e6)
    seq.control_input.extend(
        [
            _control("START", mc.ModelSequenceBatching.Control.CONTROL_SEQUENCE_START, bool_false_true=[False, True]),
            _control("END", mc.ModelSequenceBatching.Control.CONTROL_SEQUENCE_END, bool_false_true=[False, True]),
            _control("CORRID", mc.ModelSequenceBatching.Control.CONTROL_SEQUENCE_CORRID, data_type=mc.TYPE_UINT64),
        ]
    )
    seq.oldest.max_candidate_sequences = 2 * max_sessions
    seq.oldest.max_queue_delay_microseconds = 0
    config.input.extend(
        [
            pbtxt.tensor_input("audio", _F32, [-1], optional=True),
            pbtxt.tensor_input("audio_int16", _I16, [-1], optional=True),
            pbtxt.tensor_input("sample_rate", _I32, [1], optional=True),
            pbtxt.tensor_input("avatar_id", _STR, [1], optional=True),
            pbtxt.tensor_input("options", _STR, [1], optional=True),
            pbtxt.tensor_input("controls", _STR, [1], optional=True),
            # Behind a proxy: the avatar's source, so that any replica can open the session.
            pbtxt.tensor_input("avatar_image", _STR, [1], optional=True),
            pbtxt.tensor_input("avatar_video", _STR, [1], optional=True),
            pbtxt.tensor_input("avatar_options", _STR, [1], optional=True),
        ]
    )
    config.output.extend(
        [
            pbtxt.tensor_output("frame", _U8, [-1]),
            pbtxt.tensor_output("frame_shape", _I32, [3]),
            pbtxt.tensor_output("frame_index", _I64, [1]),
            pbtxt.tensor_output("pts_s", _F64, [1]),
        ]
    )
    pbtxt.set_parameters(
        config,
        {
            "idle_timeout_s": f"{idle_timeout_s:g}",
            "max_sessions": str(max_sessions),
            "max_request_audio_s": f"{max_request_audio_s:g}",
            "profile": profile.name,
        },
    )
    config.instance_group.append(pbtxt.instance_group(pbtxt.KIND_CPU, 1))
    return config
