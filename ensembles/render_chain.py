"""`render_chain` ensemble: stitch -> warp -> decode as one Triton call.

Inputs (batched like the stages, B frames): `feature_3d` B×C×D×H×W (the avatar's f_s), `kp_source`,
`kp_driving` B×21×3. Output: `output` B×3×S×S, the rendered face crop in [0, 1]. The stitching
network corrects the driving keypoints, the warp network moves the source feature volume with them
and the decoder paints the 2-D feature (Ditto: `core/models/stitch_network.py`, `warp_network.py`,
`decoder.py`). The orchestrator renders every frame batch through this ensemble.
"""

from ditto_triton.chains import Chain, ChainStep

RENDER_CHAIN = Chain(
    name="render_chain",
    inputs=("feature_3d", "kp_source", "kp_driving"),
    outputs=("output",),
    steps=(
        ChainStep(
            "stitch_network", {"kp_source": "kp_source", "kp_driving": "kp_driving"}, {"out": "kp_driving_stitched"}
        ),
        ChainStep(
            "warp_network",
            {"feature_3d": "feature_3d", "kp_source": "kp_source", "kp_driving": "kp_driving_stitched"},
            {"out": "warped_feature"},
        ),
        ChainStep("decoder", {"feature": "warped_feature"}, {"output": "output"}),
    ),
)

# Ditto's flag_stitching=False: warp and decode the driving keypoints as they are. Run step by step (it is
# not deployed as an ensemble).
UNSTITCHED_CHAIN = Chain(
    name="render_chain_unstitched",
    inputs=RENDER_CHAIN.inputs,
    outputs=RENDER_CHAIN.outputs,
    steps=(
        ChainStep(
            "warp_network",
            {"feature_3d": "feature_3d", "kp_source": "kp_source", "kp_driving": "kp_driving"},
            {"out": "warped_feature"},
        ),
        RENDER_CHAIN.steps[-1],
    ),
)
