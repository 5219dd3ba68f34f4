"""`extractors` ensemble: one source image through the appearance and motion extractors at once.

Input `image` B×3×N×N (RGB in [0, 1], N = 256 full / 64 tiny). Outputs: `pred` (f_s, B×C×D×H×W) from
the appearance extractor and `pitch`, `yaw`, `roll` (B×66 bin logits), `t` (B×3), `exp` (B×63),
`scale` (B×1), `kp` (B×63) from the motion extractor. Both steps read the same input, so Triton
runs them concurrently.
"""

from ditto_triton.chains import Chain, ChainStep

_MOTION = ("pitch", "yaw", "roll", "t", "exp", "scale", "kp")

EXTRACTORS = Chain(
    name="extractors",
    inputs=("image",),
    outputs=("pred", *_MOTION),
    steps=(
        ChainStep("appearance_extractor", {"image": "image"}, {"pred": "pred"}),
        ChainStep("motion_extractor", {"image": "image"}, {name: name for name in _MOTION}),
    ),
)
