"""LMDM (Ditto paper: the latent motion diffusion model; no single-letter name) and its guided step.

`MotionDecoder` predicts x0 for an 80-frame window of 265-d motion vectors (architecture
reference §3.6), with state-dict keys equal to `lmdm_v0.4_hubert.pth["model_state_dict"]`:

    x (B, N, M), cond_frame (B, M), cond (B, N, C), times (B,) int64  ->  x0 (B, N, M)
    N = seq_frames (80), M = motion_dim (265), C = cond_dim (1103), D = latent_dim (512)

`cond` -> cond_projection + cond_encoder (pre-norm rotary self-attention) -> N condition tokens,
replaced by `null_cond_embed` / `null_cond_hidden` in the unconditional pass. x ++ cond_frame ->
input_projection -> FiLM decoder layers (self-attn, cross-attn to norm_cond(tokens ++ 2 time tokens),
FF; each branch modulated by FiLM of the time + pooled-condition vector) -> final_layer.

`LMDMStep` is the exported stage: one classifier-free-guided step, both passes in one batch of 2B:

    x (B,N,M), cond_frame (B,M), cond (B,N,C), time_cond (B,) int64, guidance_weight (B,)
        ->  pred_noise, x_start (B,N,M)
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ditto_triton.diffusion_schedule import cosine_alphas_cumprod
from ditto_triton.profiles import LMDMConfig

DROPOUT = 0.1  # training only; every dropout is inactive in eval
NUM_TIME_TOKENS = 2
ROTARY_THETA = 10000.0


class RotaryEmbedding(nn.Module):
    """Interleaved-pair rotary positions over the full D-wide layer input ("lang" frequencies).

    One instance is shared by every layer, so its `freqs` buffer appears under each layer's
    `rotary.` prefix in the state dict, as in the checkpoint.
    """

    synthetic_keep = True

    def __init__(self, dim: int, theta: float = ROTARY_THETA) -> None:
        super().__init__()
        self.dim = dim
        self.register_buffer("freqs", 1.0 / theta ** (torch.arange(0, dim, 2).float() / dim))

    def tables(self, seq_len: int) -> tuple[torch.Tensor, torch.Tensor]:
        """cos and signed sin of the angles, each (seq_len, D): pair i gets (cos, cos) and (−sin, sin)."""
        positions = torch.arange(seq_len, dtype=self.freqs.dtype, device=self.freqs.device)
        angles = positions[:, None] * self.freqs[None, :]
        cos, sin = angles.cos(), angles.sin()
        return torch.stack((cos, cos), dim=-1).flatten(-2), torch.stack((-sin, sin), dim=-1).flatten(-2)

    def forward(self, x: torch.Tensor, seq_len: int) -> torch.Tensor:
        """Rotate x (B, seq_len, D) by positions 0..seq_len-1: pair (a, b) -> (a·cos − b·sin, b·cos + a·sin)."""
        # seq_len and dim are python ints (from the config), so everything but x is a graph constant.
        cos, signed_sin = self.tables(seq_len)
        swap = torch.arange(self.dim, device=x.device).view(-1, 2).flip(-1).flatten()
        return x * cos + x[..., swap] * signed_sin


class SinusoidalPosEmb(nn.Module):
    """Diffusion-step embedding: concat(sin(t·f_i), cos(t·f_i)), f_i = 10000^(-i/(half-1))."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.dim = dim

    def forward(self, times: torch.Tensor) -> torch.Tensor:
        half = self.dim // 2
        steps = torch.arange(half, device=times.device, dtype=torch.float32)
        freqs = torch.exp(steps * (-math.log(10000) / (half - 1)))
        angles = times.to(torch.float32)[:, None] * freqs[None, :]
        return torch.cat((angles.sin(), angles.cos()), dim=-1)


class DenseFiLM(nn.Module):
    """Mish -> Linear D -> 2D, split into per-sample (scale, shift), each (B, 1, D)."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.block = nn.Sequential(nn.Mish(), nn.Linear(dim, dim * 2))

    def forward(self, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        scale, shift = self.block(t).unsqueeze(1).chunk(2, dim=-1)
        return scale, shift


def _film(h: torch.Tensor, scale_shift: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
    scale, shift = scale_shift
    return (scale + 1) * h + shift


class _FeedForward(nn.Module):
    """Mixin: the D -> ff -> D GELU feed-forward used by both layer kinds (keys linear1/linear2)."""

    linear1: nn.Linear
    linear2: nn.Linear
    dropout: nn.Dropout

    def _ff(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear2(self.dropout(F.gelu(self.linear1(x))))


class CondEncoderLayer(_FeedForward):
    """Pre-norm transformer encoder layer; rotary q = k = rot(x), v = x."""

    def __init__(self, dim: int, heads: int, ff_size: int, rotary: RotaryEmbedding) -> None:
        super().__init__()
        self.self_attn = nn.MultiheadAttention(dim, heads, dropout=DROPOUT, batch_first=True)
        self.linear1 = nn.Linear(dim, ff_size)
        self.linear2 = nn.Linear(ff_size, dim)
        self.norm1 = nn.LayerNorm(dim, eps=1e-5)
        self.norm2 = nn.LayerNorm(dim, eps=1e-5)
        self.dropout = nn.Dropout(DROPOUT)
        self.dropout1 = nn.Dropout(DROPOUT)
        self.dropout2 = nn.Dropout(DROPOUT)
        self.rotary = rotary

    def forward(self, x: torch.Tensor, seq_len: int) -> torch.Tensor:
        h = self.norm1(x)
        qk = self.rotary(h, seq_len)
        x = x + self.dropout1(self.self_attn(qk, qk, h, need_weights=False)[0])
        return x + self.dropout2(self._ff(self.norm2(x)))


class FiLMDecoderLayer(_FeedForward):
    """Pre-norm decoder layer: self-attn, cross-attn to the memory, FF; each branch FiLM-modulated by t."""

    def __init__(self, dim: int, heads: int, ff_size: int, rotary: RotaryEmbedding) -> None:
        super().__init__()
        self.self_attn = nn.MultiheadAttention(dim, heads, dropout=DROPOUT, batch_first=True)
        self.multihead_attn = nn.MultiheadAttention(dim, heads, dropout=DROPOUT, batch_first=True)
        self.linear1 = nn.Linear(dim, ff_size)
        self.linear2 = nn.Linear(ff_size, dim)
        self.norm1 = nn.LayerNorm(dim, eps=1e-5)
        self.norm2 = nn.LayerNorm(dim, eps=1e-5)
        self.norm3 = nn.LayerNorm(dim, eps=1e-5)
        self.dropout = nn.Dropout(DROPOUT)
        self.dropout1 = nn.Dropout(DROPOUT)
        self.dropout2 = nn.Dropout(DROPOUT)
        self.dropout3 = nn.Dropout(DROPOUT)
        self.film1 = DenseFiLM(dim)
        self.film2 = DenseFiLM(dim)
        self.film3 = DenseFiLM(dim)
        self.rotary = rotary

    def forward(
        self, x: torch.Tensor, memory: torch.Tensor, t: torch.Tensor, seq_len: int, mem_len: int
    ) -> torch.Tensor:
        h = self.norm1(x)
        qk = self.rotary(h, seq_len)
        h = self.dropout1(self.self_attn(qk, qk, h, need_weights=False)[0])
        x = x + _film(h, self.film1(t))

        h = self.norm2(x)
        q, k = self.rotary(h, seq_len), self.rotary(memory, mem_len)
        h = self.dropout2(self.multihead_attn(q, k, memory, need_weights=False)[0])
        x = x + _film(h, self.film2(t))

        h = self.dropout3(self._ff(self.norm3(x)))
        return x + _film(h, self.film3(t))


class DecoderLayerStack(nn.Module):
    """Holds the decoder layers under `stack.{i}` (checkpoint key `seqTransDecoder.stack.{i}`)."""

    def __init__(self, layers: list[FiLMDecoderLayer]) -> None:
        super().__init__()
        self.stack = nn.ModuleList(layers)

    def forward(
        self, x: torch.Tensor, memory: torch.Tensor, t: torch.Tensor, seq_len: int, mem_len: int
    ) -> torch.Tensor:
        for layer in self.stack:
            x = layer(x, memory, t, seq_len, mem_len)
        return x


class MotionDecoder(nn.Module):
    """LMDM denoiser: predicts x0 (B, N, M) from x_t, the motion condition frame, the condition and t."""

    def __init__(self, cfg: LMDMConfig) -> None:
        super().__init__()
        d, n = cfg.latent_dim, cfg.seq_frames
        self.seq_frames, self.latent_dim, self.motion_dim = n, d, cfg.motion_dim
        self.rotary = RotaryEmbedding(d)
        self.time_mlp = nn.Sequential(SinusoidalPosEmb(d), nn.Linear(d, d * 4), nn.Mish())
        self.to_time_cond = nn.Sequential(nn.Linear(d * 4, d))
        self.to_time_tokens = nn.Sequential(nn.Linear(d * 4, d * NUM_TIME_TOKENS))
        self.null_cond_embed = nn.Parameter(torch.randn(1, n, d))
        self.null_cond_hidden = nn.Parameter(torch.randn(1, d))
        self.norm_cond = nn.LayerNorm(d, eps=1e-5)
        self.input_projection = nn.Linear(cfg.motion_dim * 2, d)
        self.cond_encoder = nn.Sequential(
            *(CondEncoderLayer(d, cfg.num_heads, cfg.ff_size, self.rotary) for _ in range(cfg.num_cond_layers))
        )
        self.cond_projection = nn.Linear(cfg.cond_dim, d)
        self.non_attn_cond_projection = nn.Sequential(
            nn.LayerNorm(d, eps=1e-5), nn.Linear(d, d), nn.SiLU(), nn.Linear(d, d)
        )
        self.seqTransDecoder = DecoderLayerStack(
            [FiLMDecoderLayer(d, cfg.num_heads, cfg.ff_size, self.rotary) for _ in range(cfg.num_layers)]
        )
        self.final_layer = nn.Linear(d, cfg.motion_dim)

    def encode_condition(self, cond: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """cond (B, N, C) -> condition tokens (B, N, D) and pooled hidden (B, D) of the conditional pass."""
        tokens = self.cond_projection(cond)
        for layer in self.cond_encoder:
            tokens = layer(tokens, self.seq_frames)
        return tokens, self.non_attn_cond_projection(tokens.mean(dim=-2))

    def null_condition(self, batch: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Learned tokens (B, N, D) and hidden (B, D) of the unconditional pass."""
        n, d = self.seq_frames, self.latent_dim
        return self.null_cond_embed.expand(batch, n, d), self.null_cond_hidden.expand(batch, d)

    def denoise(
        self,
        x: torch.Tensor,
        cond_frame: torch.Tensor,
        cond_tokens: torch.Tensor,
        cond_hidden: torch.Tensor,
        times: torch.Tensor,
    ) -> torch.Tensor:
        """Everything after the condition encoder: (B,N,M), (B,M), (B,N,D), (B,D), (B,) -> x0 (B,N,M)."""
        n, d = self.seq_frames, self.latent_dim
        h = self.input_projection(torch.cat((x, cond_frame.unsqueeze(1).repeat(1, n, 1)), dim=-1))

        t_hidden = self.time_mlp(times)
        t = self.to_time_cond(t_hidden) + cond_hidden
        t_tokens = self.to_time_tokens(t_hidden).reshape(-1, NUM_TIME_TOKENS, d)
        memory = self.norm_cond(torch.cat((cond_tokens, t_tokens), dim=-2))

        h = self.seqTransDecoder(h, memory, t, n, n + NUM_TIME_TOKENS)
        return self.final_layer(h)

    def forward(
        self,
        x: torch.Tensor,
        cond_frame: torch.Tensor,
        cond: torch.Tensor,
        times: torch.Tensor,
        drop_cond: bool = False,
    ) -> torch.Tensor:
        """One pass; `drop_cond=True` is the unconditional pass (cond ignored, cond_frame kept)."""
        if drop_cond:
            tokens, hidden = self.null_condition(x.shape[0])
        else:
            tokens, hidden = self.encode_condition(cond)
        return self.denoise(x, cond_frame, tokens, hidden, times)


class NoiseSchedule(nn.Module):
    """ᾱ-derived per-step factors of the ε-from-x0 identity, shape (T,), float32; never in a checkpoint."""

    # A module of its own so that `synthetic_keep` protects these buffers and nothing else.
    synthetic_keep = True

    def __init__(self, n_timestep: int) -> None:
        super().__init__()
        alpha_bar = cosine_alphas_cumprod(n_timestep)
        for name, value in (
            ("alphas_cumprod", alpha_bar),
            ("sqrt_recip1m_alphas_cumprod", np.sqrt(1.0 / (1.0 - alpha_bar))),
            ("sqrt_recipm1_alphas_cumprod", np.sqrt(1.0 / alpha_bar - 1.0)),
        ):
            self.register_buffer(name, torch.from_numpy(value).float(), persistent=False)

    def predict_noise(self, x_t: torch.Tensor, x0: torch.Tensor, times: torch.Tensor) -> torch.Tensor:
        """ε = x_t/√(1−ᾱ_t) − x0/√(1/ᾱ_t − 1), ᾱ_t gathered per sample."""
        a = self.sqrt_recip1m_alphas_cumprod[times][:, None, None]
        b = self.sqrt_recipm1_alphas_cumprod[times][:, None, None]
        return a * x_t - x0 / b


class LMDMStep(nn.Module):
    """The `lmdm` stage: one classifier-free-guided DDIM network call (x0 = unc + w·(cond − unc)).

    The guidance weight w is a per-sample input (Ditto fixes it at 2 inside its graph), so sessions
    with different weights still batch together; without it the config's weight applies."""

    def __init__(self, cfg: LMDMConfig) -> None:
        super().__init__()
        self.model = MotionDecoder(cfg)
        self.schedule = NoiseSchedule(cfg.n_timestep)
        self.guidance_weight = float(cfg.guidance_weight)

    def forward(
        self,
        x: torch.Tensor,
        cond_frame: torch.Tensor,
        cond: torch.Tensor,
        time_cond: torch.Tensor,
        guidance_weight: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        batch = x.shape[0]
        weight = self.guidance_weight if guidance_weight is None else guidance_weight.reshape(-1, 1, 1)
        # The condition encoder only runs on the B conditional samples; the null pass uses learned tokens.
        cond_tokens, cond_hidden = self.model.encode_condition(cond)
        null_tokens, null_hidden = self.model.null_condition(batch)
        x0 = self.model.denoise(
            torch.cat((x, x)),
            torch.cat((cond_frame, cond_frame)),
            torch.cat((null_tokens, cond_tokens)),
            torch.cat((null_hidden, cond_hidden)),
            torch.cat((time_cond, time_cond)),
        ).reshape(2, -1, self.model.seq_frames, self.model.motion_dim)
        unc, conditioned = x0[0], x0[1]
        x_start = unc + (conditioned - unc) * weight
        return self.schedule.predict_noise(x, x_start, time_cond), x_start
