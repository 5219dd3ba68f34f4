"""`extractors` ensemble: one source image through the appearance and motion extractors at once.

Input `image` B×3×N×N (RGB in [0, 1], N = 256 full / 64 tiny). Outputs: `pred` (f_s, B×C×D×H×W) from
the appearance extractor and `pitch`, `yaw`, `roll` (B×66 bin logits), `t` (B×3), `exp` (B×63),
`scale` (B×1), `kp` (B×63) from the motion extractor. Both steps read the same input, so Triton
runs them concurrently.
"""

from __future__ import annotations

from collections.abc import Mapping

from ditto_triton.model_repository import pbtxt
from ditto_triton.stages import StageSpec

NAME = "extractors"
STAGES = ("appearance_extractor", "motion_extractor")


def extractors_config(specs: Mapping[str, StageSpec], max_batch_size: int) -> pbtxt.ModelConfig:
    if max_batch_size < 1:
        raise ValueError(f"{NAME}: the stages are batched, max_batch_size must be >= 1 (got {max_batch_size})")
    appearance, motion = (specs[name] for name in STAGES)
    (image,) = appearance.inputs
    (motion_image,) = motion.inputs
    if image.shape != motion_image.shape or image.dtype != motion_image.dtype:
        raise ValueError(f"{NAME}: the extractors disagree on their image input ({image} vs {motion_image})")
    outputs = appearance.outputs + motion.outputs
    if len({t.name for t in outputs}) != len(outputs):
        raise ValueError(f"{NAME}: output names collide: {[t.name for t in outputs]}")

    config = pbtxt.ModelConfig(name=NAME, platform="ensemble", max_batch_size=max_batch_size)
    config.input.append(pbtxt.spec_input(image, batched=True))
    config.output.extend(pbtxt.spec_output(t, batched=True) for t in outputs)
    config.ensemble_scheduling.step.extend(
        pbtxt.ensemble_step(
            stage.name, {stage.inputs[0].name: image.name}, {t.name: t.name for t in stage.outputs}
        )
        for stage in (appearance, motion)
    )
    return config
