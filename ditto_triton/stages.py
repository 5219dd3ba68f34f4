"""The one declaration of every Ditto stage's tensors.

Export names its ONNX inputs/outputs from here, the manifest records them, and the Triton configs
are rendered and validated against them. Names and order follow Ditto's released engines
(architecture reference §0, §3). A dimension of -1 is dynamic; `batch_dynamic` stages have a
leading batch axis that Triton may batch across sessions.
"""

from __future__ import annotations

from dataclasses import dataclass

from ditto_triton.profiles import Profile

DYNAMIC = -1


@dataclass(frozen=True)
class TensorSpec:
    name: str
    shape: tuple[int, ...]
    dtype: str = "float32"

    def example_shape(self, batch: int = 1, dynamic_length: int | None = None) -> tuple[int, ...]:
        """A concrete shape: batch for a leading -1, `dynamic_length` for any other -1."""
        out = []
        for i, dim in enumerate(self.shape):
            if dim != DYNAMIC:
                out.append(dim)
            elif i == 0 and dynamic_length is None:
                out.append(batch)
            else:
                if dynamic_length is None:
                    raise ValueError(f"{self.name}: dimension {i} is dynamic; give dynamic_length")
                out.append(dynamic_length)
        return tuple(out)


@dataclass(frozen=True)
class StageSpec:
    name: str
    onnx_file: str
    checkpoint_file: str | None
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    batch_dynamic: bool
    per_frame: bool
    description: str

    @property
    def input_names(self) -> list[str]:
        return [t.name for t in self.inputs]

    @property
    def output_names(self) -> list[str]:
        return [t.name for t in self.outputs]


STAGE_ORDER = (
    "appearance_extractor",
    "motion_extractor",
    "warp_network",
    "decoder",
    "stitch_network",
    "lmdm",
    "hubert",
)

B = DYNAMIC


def stage_specs(profile: Profile) -> dict[str, StageSpec]:
    """All stage specs of a profile, in `STAGE_ORDER`."""
    specs = (
        _appearance_extractor(profile),
        _motion_extractor(profile),
        _warp_network(profile),
        _decoder(profile),
        _stitch_network(profile),
        _lmdm(profile),
        _hubert(profile),
    )
    return {s.name: s for s in specs}


def _feature_volume(profile: Profile) -> tuple[int, ...]:
    """The appearance feature volume f_s, batched: (B, C, D, H, W)."""
    return (B, *profile.appearance.feature_shape)


def _keypoints(profile: Profile) -> tuple[int, ...]:
    return (B, profile.motion.num_kp, 3)


def _appearance_extractor(profile: Profile) -> StageSpec:
    size = profile.appearance.image_size
    return StageSpec(
        "appearance_extractor",
        "appearance_extractor.onnx",
        "appearance_extractor.pth",
        inputs=(TensorSpec("image", (B, 3, size, size)),),
        outputs=(TensorSpec("pred", _feature_volume(profile)),),
        batch_dynamic=True,
        per_frame=True,
        description="F: cropped source face (RGB in [0,1]) -> 3-D appearance feature volume f_s",
    )


def _motion_extractor(profile: Profile) -> StageSpec:
    m = profile.motion
    return StageSpec(
        "motion_extractor",
        "motion_extractor.onnx",
        "motion_extractor.pth",
        inputs=(TensorSpec("image", (B, 3, m.image_size, m.image_size)),),
        outputs=(
            TensorSpec("pitch", (B, m.num_bins)),
            TensorSpec("yaw", (B, m.num_bins)),
            TensorSpec("roll", (B, m.num_bins)),
            TensorSpec("t", (B, 3)),
            TensorSpec("exp", (B, 3 * m.num_kp)),
            TensorSpec("scale", (B, 1)),
            TensorSpec("kp", (B, 3 * m.num_kp)),
        ),
        batch_dynamic=True,
        per_frame=True,
        description="M: face image -> pose bin logits, translation, expression, scale, canonical keypoints",
    )


def _warp_network(profile: Profile) -> StageSpec:
    _, _, h, w = profile.appearance.feature_shape
    kp = _keypoints(profile)
    return StageSpec(
        "warp_network",
        "warp_network.onnx",
        "warp_network.pth",
        inputs=(
            TensorSpec("feature_3d", _feature_volume(profile)),
            TensorSpec("kp_source", kp),
            TensorSpec("kp_driving", kp),
        ),
        outputs=(TensorSpec("out", (B, profile.warp.out_channels, h, w)),),
        batch_dynamic=True,
        per_frame=True,
        description="W: warp f_s from source to driving keypoints (two 5-D grid samples) -> 2-D feature",
    )


def _decoder(profile: Profile) -> StageSpec:
    d = profile.decoder
    return StageSpec(
        "decoder",
        "decoder.onnx",
        "decoder.pth",
        inputs=(TensorSpec("feature", (B, d.input_channels, d.feature_size, d.feature_size)),),
        outputs=(TensorSpec("output", (B, 3, d.output_size, d.output_size)),),
        batch_dynamic=True,
        per_frame=True,
        description="G: SPADE decoder, warped feature -> RGB face crop in [0,1]",
    )


def _stitch_network(profile: Profile) -> StageSpec:
    kp = _keypoints(profile)
    return StageSpec(
        "stitch_network",
        "stitch_network.onnx",
        "stitch_network.pth",
        inputs=(TensorSpec("kp_source", kp), TensorSpec("kp_driving", kp)),
        outputs=(TensorSpec("out", kp),),
        batch_dynamic=True,
        per_frame=True,
        description="S: stitching MLP, corrects driving keypoints for seamless paste-back",
    )


def _lmdm(profile: Profile) -> StageSpec:
    lm = profile.lmdm
    window = (B, lm.seq_frames, lm.motion_dim)
    return StageSpec(
        "lmdm",
        "lmdm_v0.4_hubert.onnx",
        "lmdm_v0.4_hubert.pth",
        inputs=(
            TensorSpec("x", window),
            TensorSpec("cond_frame", (B, lm.motion_dim)),
            TensorSpec("cond", (B, lm.seq_frames, lm.cond_dim)),
            TensorSpec("time_cond", (B,), "int64"),
            TensorSpec("guidance_weight", (B,)),
        ),
        outputs=(TensorSpec("pred_noise", window), TensorSpec("x_start", window)),
        batch_dynamic=True,
        per_frame=False,
        description="LMDM: one classifier-free-guided denoising step of an 80-frame motion window (per-sample guidance weight)",
    )


def _hubert(profile: Profile) -> StageSpec:
    return StageSpec(
        "hubert",
        "hubert.onnx",
        None,
        inputs=(TensorSpec("input_values", (1, DYNAMIC)),),
        outputs=(TensorSpec("encoding_out", (DYNAMIC, profile.hubert.hidden_size)),),
        batch_dynamic=False,
        per_frame=False,
        description="HuBERT streaming encoder: 16 kHz samples -> 50 Hz features (2-D, no batch axis)",
    )
