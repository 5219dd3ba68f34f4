"""SPADE decoder G: warped 2-D feature -> RGB face crop in [0, 1].

Shapes (FULL): feature (B, 256, 64, 64) -> output (B, 3, 512, 512) after sigmoid.
`fc` (k3, Cin -> 2*Cin), six SPADE residual blocks `G_middle_{0..5}` at 64^2, nearest x2, `up_0`
(2*Cin -> Cin) at 128^2, nearest x2, `up_1` (Cin -> out_channels) at 256^2, then `conv_img`
(LeakyReLU 0.2, conv k3, PixelShuffle) and a sigmoid. Every SPADE norm is modulated by the decoder
input itself (the "segmap"), resized to the block's resolution.
`conv_0`, `conv_1` and `conv_s` carry torch's spectral norm, as in the released checkpoint
(`weight_orig`, `weight_u`, `weight_v`); `fold_spectral_norm` bakes it into plain weights for export.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import remove_spectral_norm, spectral_norm
from torch.nn.utils.spectral_norm import SpectralNorm

from ditto_triton.profiles import DecoderConfig

LEAKY_SLOPE = 0.2


class SPADE(nn.Module):
    """Parameter-free InstanceNorm of x, modulated by gamma/beta predicted from the segmap.

    The caller passes the segmap already resized (nearest) to x's spatial size.
    """

    def __init__(self, norm_nc: int, label_nc: int, hidden: int) -> None:
        super().__init__()
        self.param_free_norm = nn.InstanceNorm2d(norm_nc, affine=False)
        self.mlp_shared = nn.Sequential(nn.Conv2d(label_nc, hidden, kernel_size=3, padding=1), nn.ReLU())
        self.mlp_gamma = nn.Conv2d(hidden, norm_nc, kernel_size=3, padding=1)
        self.mlp_beta = nn.Conv2d(hidden, norm_nc, kernel_size=3, padding=1)

    def forward(self, x: torch.Tensor, segmap: torch.Tensor) -> torch.Tensor:
        actv = self.mlp_shared(segmap)
        return self.param_free_norm(x) * (1 + self.mlp_gamma(actv)) + self.mlp_beta(actv)


class SPADEResnetBlock(nn.Module):
    """SPADE -> LReLU -> conv_0 -> SPADE -> LReLU -> conv_1, plus a (learned when fin != fout) shortcut."""

    def __init__(self, fin: int, fout: int, label_nc: int, hidden: int) -> None:
        super().__init__()
        self.learned_shortcut = fin != fout
        fmiddle = min(fin, fout)
        self.conv_0 = spectral_norm(nn.Conv2d(fin, fmiddle, kernel_size=3, padding=1))
        self.conv_1 = spectral_norm(nn.Conv2d(fmiddle, fout, kernel_size=3, padding=1))
        self.norm_0 = SPADE(fin, label_nc, hidden)
        self.norm_1 = SPADE(fmiddle, label_nc, hidden)
        if self.learned_shortcut:
            self.conv_s = spectral_norm(nn.Conv2d(fin, fout, kernel_size=1, bias=False))
            self.norm_s = SPADE(fin, label_nc, hidden)

    def forward(self, x: torch.Tensor, segmap: torch.Tensor) -> torch.Tensor:
        shortcut = self.conv_s(self.norm_s(x, segmap)) if self.learned_shortcut else x
        dx = self.conv_0(F.leaky_relu(self.norm_0(x, segmap), LEAKY_SLOPE))
        dx = self.conv_1(F.leaky_relu(self.norm_1(dx, segmap), LEAKY_SLOPE))
        return shortcut + dx


class SPADEDecoder(nn.Module):
    """G: (B, Cin, H, W) -> (B, 3, 4*upscale*H, 4*upscale*W) in [0, 1]."""

    NUM_MIDDLE = 6

    def __init__(self, cfg: DecoderConfig) -> None:
        super().__init__()
        cin = cfg.input_channels
        hidden = cfg.spade_hidden
        self.fc = nn.Conv2d(cin, 2 * cin, kernel_size=3, padding=1)
        for i in range(self.NUM_MIDDLE):
            self.add_module(f"G_middle_{i}", SPADEResnetBlock(2 * cin, 2 * cin, cin, hidden))
        self.up_0 = SPADEResnetBlock(2 * cin, cin, cin, hidden)
        self.up_1 = SPADEResnetBlock(cin, cfg.out_channels, cin, hidden)
        self.up = nn.Upsample(scale_factor=2, mode="nearest")
        if cfg.upscale <= 1:
            self.conv_img: nn.Module = nn.Conv2d(cfg.out_channels, 3, kernel_size=3, padding=1)
        else:
            self.conv_img = nn.Sequential(
                nn.Conv2d(cfg.out_channels, 3 * cfg.upscale**2, kernel_size=3, padding=1),
                nn.PixelShuffle(cfg.upscale),
            )

    def forward(self, feature: torch.Tensor) -> torch.Tensor:
        # The segmap is resized once per resolution (nearest x2 twice equals nearest x4) instead of
        # inside every SPADE; the values are identical and the graph has two Resize nodes, not 18.
        seg_2 = self.up(feature)
        seg_4 = self.up(seg_2)
        x = self.fc(feature)
        for i in range(self.NUM_MIDDLE):
            x = getattr(self, f"G_middle_{i}")(x, feature)
        x = self.up_0(self.up(x), seg_2)
        x = self.up_1(self.up(x), seg_4)
        return torch.sigmoid(self.conv_img(F.leaky_relu(x, LEAKY_SLOPE)))


def fold_spectral_norm(decoder: nn.Module) -> None:
    """Replace every spectral-normed weight by the plain `weight` = weight_orig / sigma, in place.

    sigma comes from the stored u and v without a power iteration (torch's eval-mode semantics), so
    eval-mode outputs are unchanged and the exported graph has no spectral-norm arithmetic.
    """
    for module in decoder.modules():
        if any(isinstance(hook, SpectralNorm) for hook in module._forward_pre_hooks.values()):
            remove_spectral_norm(module)
