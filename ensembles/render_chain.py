"""`render_chain` ensemble: stitch -> warp -> decode as one Triton call, no Python in the path.

Inputs (batched like the stages, B frames): `feature_3d` B×C×D×H×W (the avatar's f_s), `kp_source`,
`kp_driving` B×21×3. Output: `output` B×3×S×S, the rendered face crop in [0, 1]. The stitching
network's corrected driving keypoints feed the warp network, whose 2-D feature feeds the decoder
(architecture reference §4.4, §3.3–3.5).
"""

from __future__ import annotations

from collections.abc import Mapping

from ditto_triton.model_repository import pbtxt
from ditto_triton.stages import StageSpec, TensorSpec

NAME = "render_chain"
STAGES = ("stitch_network", "warp_network", "decoder")

# Internal ensemble tensors (never seen by clients).
_STITCHED = "kp_driving_stitched"
_WARPED = "warped_feature"


def _by_name(tensors: tuple[TensorSpec, ...]) -> dict[str, TensorSpec]:
    return {t.name: t for t in tensors}


def render_chain_config(specs: Mapping[str, StageSpec], max_batch_size: int) -> pbtxt.ModelConfig:
    """The ensemble's config; `max_batch_size` must not exceed the composing stages' own."""
    if max_batch_size < 1:
        raise ValueError(f"{NAME}: the stages are batched, max_batch_size must be >= 1 (got {max_batch_size})")
    stitch, warp, decoder = (specs[name] for name in STAGES)
    warp_in = _by_name(warp.inputs)
    stitch_in = _by_name(stitch.inputs)
    (stitch_out,) = stitch.outputs
    (warp_out,) = warp.outputs
    (decoder_in,) = decoder.inputs
    (decoder_out,) = decoder.outputs

    config = pbtxt.ModelConfig(name=NAME, platform="ensemble", max_batch_size=max_batch_size)
    config.input.extend(
        [
            pbtxt.spec_input(warp_in["feature_3d"], batched=True),
            pbtxt.spec_input(stitch_in["kp_source"], batched=True),
            pbtxt.spec_input(stitch_in["kp_driving"], batched=True),
        ]
    )
    config.output.append(pbtxt.spec_output(decoder_out, batched=True))
    config.ensemble_scheduling.step.extend(
        [
            pbtxt.ensemble_step(
                stitch.name,
                {"kp_source": "kp_source", "kp_driving": "kp_driving"},
                {stitch_out.name: _STITCHED},
            ),
            pbtxt.ensemble_step(
                warp.name,
                {"feature_3d": "feature_3d", "kp_source": "kp_source", "kp_driving": _STITCHED},
                {warp_out.name: _WARPED},
            ),
            pbtxt.ensemble_step(decoder.name, {decoder_in.name: _WARPED}, {decoder_out.name: decoder_out.name}),
        ]
    )
    return config
