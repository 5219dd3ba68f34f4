"""Network hyper-parameters per profile.

`full` is Ditto's released architecture (see the architecture reference, §3). `tiny` keeps every
network's topology (layer types and their order), I/O names and tensor ranks but shrinks widths,
spatial sizes and a few repeat counts so the whole pipeline streams in real time on two CPU cores. Profiles are data: the networks read these
dataclasses and never branch on the profile name. This module imports neither torch nor Triton.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ditto_triton.protocol import SAMPLE_RATE


@dataclass(frozen=True)
class AppearanceConfig:
    """Appearance feature extractor F: image -> 3-D feature volume f_s."""

    image_size: int = 256
    image_channel: int = 3
    block_expansion: int = 64
    num_down_blocks: int = 2
    max_features: int = 512
    reshape_channel: int = 32
    reshape_depth: int = 16
    num_resblocks: int = 6

    @property
    def feature_size(self) -> int:
        return self.image_size // (2**self.num_down_blocks)

    @property
    def feature_shape(self) -> tuple[int, int, int, int]:
        """(C, D, H, W) of f_s."""
        s = self.feature_size
        return (self.reshape_channel, self.reshape_depth, s, s)


@dataclass(frozen=True)
class MotionConfig:
    """Motion extractor M (ConvNeXt-V2): image -> pose bins, t, exp, scale, canonical kp."""

    image_size: int = 256
    depths: tuple[int, ...] = (3, 3, 9, 3)
    dims: tuple[int, ...] = (96, 192, 384, 768)
    num_kp: int = 21
    num_bins: int = 66


@dataclass(frozen=True)
class WarpConfig:
    """Warping network W: dense motion (3-D hourglass) + two 5-D grid samples + 2-D projection."""

    num_kp: int = 21
    block_expansion: int = 64
    max_features: int = 512
    num_down_blocks: int = 2
    reshape_channel: int = 32
    reshape_depth: int = 16
    feature_size: int = 64
    dm_block_expansion: int = 32
    dm_max_features: int = 1024
    dm_num_blocks: int = 5
    dm_compress: int = 4
    dm_mask_kernel: int = 7
    occlusion_kernel: int = 7

    @property
    def out_channels(self) -> int:
        return self.block_expansion * (2**self.num_down_blocks)


@dataclass(frozen=True)
class DecoderConfig:
    """SPADE decoder G: warped 2-D feature -> RGB face crop in [0, 1]."""

    upscale: int = 2
    max_features: int = 512
    block_expansion: int = 64
    out_channels: int = 64
    num_down_blocks: int = 2
    spade_hidden: int = 128
    feature_size: int = 64

    @property
    def input_channels(self) -> int:
        return min(self.max_features, self.block_expansion * (2**self.num_down_blocks))

    @property
    def output_size(self) -> int:
        return self.feature_size * 4 * max(self.upscale, 1)


@dataclass(frozen=True)
class StitchConfig:
    """Stitching MLP S: (kp_source, kp_driving) -> corrected kp_driving."""

    num_kp: int = 21
    hidden: tuple[int, ...] = (128, 128, 64)


@dataclass(frozen=True)
class HubertConfig:
    """Streaming HuBERT audio encoder (HuBERT-large architecture in `full`)."""

    hidden_size: int = 1024
    num_layers: int = 24
    num_heads: int = 16
    intermediate_size: int = 4096
    conv_dim: int = 512
    conv_pos_kernel: int = 128
    conv_pos_groups: int = 16
    sample_rate: int = SAMPLE_RATE
    window_samples: int = 6480
    window_frames: int = 20


@dataclass(frozen=True)
class LMDMConfig:
    """LMDM motion diffusion transformer (MotionDecoder) and its diffusion schedule."""

    motion_dim: int = 265
    audio_dim: int = 1024
    seq_frames: int = 80
    latent_dim: int = 512
    ff_size: int = 1024
    num_layers: int = 8
    num_heads: int = 8
    num_cond_layers: int = 2
    n_timestep: int = 1000
    guidance_weight: float = 2.0

    # audio | emo (8) | eye_open (2) | eye_ball (6) | sc (63): Ditto's condition order (§5.3).
    EMO_DIM = 8
    EYE_OPEN_DIM = 2
    EYE_BALL_DIM = 6
    SC_DIM = 63

    @property
    def cond_dim(self) -> int:
        return self.audio_dim + self.EMO_DIM + self.EYE_OPEN_DIM + self.EYE_BALL_DIM + self.SC_DIM


@dataclass(frozen=True)
class Profile:
    """Every network's configuration for one deployment size."""

    name: str
    appearance: AppearanceConfig = field(default_factory=AppearanceConfig)
    motion: MotionConfig = field(default_factory=MotionConfig)
    warp: WarpConfig = field(default_factory=WarpConfig)
    decoder: DecoderConfig = field(default_factory=DecoderConfig)
    stitch: StitchConfig = field(default_factory=StitchConfig)
    hubert: HubertConfig = field(default_factory=HubertConfig)
    lmdm: LMDMConfig = field(default_factory=LMDMConfig)

    def __post_init__(self) -> None:
        c, d, h, _ = self.appearance.feature_shape
        checks = {
            "warp.reshape_channel == appearance.reshape_channel": self.warp.reshape_channel == c,
            "warp.reshape_depth == appearance.reshape_depth": self.warp.reshape_depth == d,
            "warp.feature_size == appearance feature size": self.warp.feature_size == h,
            "warp.max_features == C*D of f_s": self.warp.max_features == c * d,
            "decoder.input_channels == warp.out_channels": self.decoder.input_channels == self.warp.out_channels,
            "decoder.feature_size == warp.feature_size": self.decoder.feature_size == self.warp.feature_size,
            "appearance.image_size == motion.image_size": self.appearance.image_size == self.motion.image_size,
            "lmdm.audio_dim == hubert.hidden_size": self.lmdm.audio_dim == self.hubert.hidden_size,
            "warp.num_kp == motion.num_kp == stitch.num_kp": self.warp.num_kp
            == self.motion.num_kp
            == self.stitch.num_kp,
            "lmdm.motion_dim == 1 + 3*bins + 3 + 3*kp": self.lmdm.motion_dim
            == 1 + 3 * self.motion.num_bins + 3 + 3 * self.motion.num_kp,
        }
        broken = [name for name, ok in checks.items() if not ok]
        if broken:
            raise ValueError(f"profile {self.name!r} is inconsistent: {', '.join(broken)}")

    @property
    def render_size(self) -> int:
        """Side of the square face crop the decoder renders."""
        return self.decoder.output_size


FULL = Profile(name="full")

TINY = Profile(
    name="tiny",
    appearance=AppearanceConfig(image_size=64, block_expansion=8, max_features=16, reshape_channel=4, reshape_depth=4),
    motion=MotionConfig(image_size=64, dims=(16, 32, 64, 128)),
    warp=WarpConfig(
        block_expansion=4,
        max_features=16,
        reshape_channel=4,
        reshape_depth=4,
        feature_size=16,
        dm_block_expansion=4,
        dm_max_features=32,
        dm_num_blocks=3,
        dm_compress=1,
        dm_mask_kernel=3,
    ),
    decoder=DecoderConfig(max_features=16, block_expansion=4, out_channels=8, spade_hidden=16, feature_size=16),
    stitch=StitchConfig(hidden=(32, 32, 16)),
    hubert=HubertConfig(
        hidden_size=64, num_layers=2, num_heads=4, intermediate_size=128, conv_dim=32, conv_pos_groups=4
    ),
    # At width 64 an LMDM step costs per-node overhead, not FLOPs: 2 FiLM decoder layers and 1 condition
    # layer (every layer type kept) halve the 20 guided steps that precede the first frame.
    lmdm=LMDMConfig(audio_dim=64, latent_dim=64, ff_size=128, num_heads=4, num_layers=2, num_cond_layers=1),
)

PROFILES: dict[str, Profile] = {p.name: p for p in (FULL, TINY)}


def get_profile(name: str) -> Profile:
    try:
        return PROFILES[name]
    except KeyError:
        raise ValueError(f"unknown profile {name!r}; choose one of {sorted(PROFILES)}") from None
