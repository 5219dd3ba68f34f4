"""Synthetic HuBERT and LMDM weights whose motion follows the speech: a stand-in, not Ditto's model.

Seeded random weights make both networks run, but the motion they generate has nothing to do with the
audio, and its random scale throws the keypoints out of the face. On top of the seeded initializer
(`synthetic.py`) the synthetic export therefore hand-sets a few weights of each:

* HuBERT writes the audio's short-time energy into output channels 2 and 3 (+e and -e; exactly 0 in
  digital silence). Its first conv is a bank of random band-pass filters in +/- pairs, rectified by
  LayerNorm + GELU (GELU(z) + GELU(-z) = z erf(z / sqrt 2) >= 0); the later strided convs average
  that into channels 2/3, and a constant +/- pattern in channels 0/1 keeps every LayerNorm close to
  linear. The positional conv and the transformer blocks' residual branches add nothing.
* LMDM's first decoder layer attends from frame i to condition frame i alone (a constant query/key
  pattern whose rotary dot products peak where the positions are equal) and copies three condition
  signals into the residual stream: that energy, the eye-openness condition, and a small "jitter"
  (the other conditions, the noisy motion x and the motion condition frame through small random
  weights, so every input still moves the output a little). The final layer makes motion of them:
  the lower lip opens and the upper lip lifts with the energy, the head nods a few degrees and drops
  a little with it, the upper eyelids follow the eye-openness condition. Every other branch adds nothing.

The rest stays seeded-random; architecture, tensor names and the checkpoint layout are untouched.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from ditto_triton.export.synthetic_face import (
    LOWER_LIP_KP,
    POSE_BIN_CENTRE,
    POSE_BIN_WIDTH,
    UPPER_EYELID_KP,
    UPPER_LIP_KP,
    frontal_pose_logits,
)

ENERGY_CHANNELS = (2, 3)  # HuBERT output channels holding +energy and -energy
_PATTERN_CHANNELS = (0, 1)  # +b and -b in every HuBERT layer
_FILTER_BANK_START = 4  # first-conv channels from here on: random band-pass filters in +/- pairs
_PATTERN = 4.0  # b, in units of sqrt(channels / 2): larger keeps the LayerNorms linear for louder audio
_FILTER_GAIN = 18.0  # first-conv filter norm: speech stays on the rectifier's quadratic (energy) part
_ENERGY_GAIN = 100.0  # rectified filter bank -> energy channel (typical speech: 0.3, loud: 0.85)
_PROJECTION_GAIN = 4.0  # feature projection: spreads the saturating energy over [0, 1)

# LMDM (all amplitudes for Ditto's guidance weight 2, per unit of the energy feature)
LIP_OPENING = 0.25  # keypoint units the lower lip moves down (the upper lip lifts a third of it)
NOD_DEGREES = 6.0  # pitch
BOB = 0.025  # keypoint units the head moves down (t_y)
EYELID_PER_EYE_OPEN = 0.2  # keypoint units the upper eyelids lift per unit of the eye_open condition
_JITTER = 6e-3  # scale of the small random response to every other input
_ATTENTION_GAP = 12.0  # softmax logit gap between the matching condition frame and any other


def _pattern_bias(bias: torch.Tensor, value: float) -> None:
    bias.zero_()
    bias[_PATTERN_CHANNELS[0]], bias[_PATTERN_CHANNELS[1]] = value, -value


def _pm_rows(weight: torch.Tensor, channels: tuple[int, int], row: torch.Tensor) -> None:
    """Write `row` into channel +, its negative into channel - (so LayerNorm means stay 0)."""
    weight[channels[0]], weight[channels[1]] = row, -row


def _filter_bank(channels: int, taps: int, gen: torch.Generator) -> torch.Tensor:
    """(channels, 1, taps): zero-mean random filters of norm `_FILTER_GAIN` in +/- pairs."""
    weight = torch.zeros(channels, 1, taps)
    pairs = (channels - _FILTER_BANK_START) // 2
    filters = torch.randn(pairs, taps, generator=gen)
    filters = filters - filters.mean(dim=1, keepdim=True)
    filters = filters / filters.norm(dim=1, keepdim=True) * _FILTER_GAIN
    end = _FILTER_BANK_START + 2 * pairs
    weight[_FILTER_BANK_START:end:2, 0], weight[_FILTER_BANK_START + 1 : end : 2, 0] = filters, -filters
    return weight


def _energy_conv_(conv: nn.Conv1d, index: int, gen: torch.Generator) -> None:
    """Feature-extractor conv `index`: 0 filters the audio, 1 averages the rectified bank into the
    energy channels, the rest carry the energy on (mean over taps)."""
    out_ch, in_ch, taps = conv.weight.shape
    scale = math.sqrt(out_ch / 2)
    _pattern_bias(conv.bias, _PATTERN * scale)
    if index == 0:
        conv.weight.copy_(_filter_bank(out_ch, taps, gen))
        return
    row = torch.zeros(in_ch, taps)
    if index == 1:
        row[_FILTER_BANK_START:] = _ENERGY_GAIN * scale / (taps * (in_ch - _FILTER_BANK_START))
    else:
        row[ENERGY_CHANNELS[0]], row[ENERGY_CHANNELS[1]] = _PATTERN / taps, -_PATTERN / taps
    conv.weight.zero_()
    _pm_rows(conv.weight, ENERGY_CHANNELS, row)


def _plain_layer_norm_(norm: nn.LayerNorm) -> None:
    norm.weight.fill_(1.0)
    norm.bias.zero_()


def _zero_(linear: nn.Module) -> None:
    linear.weight.zero_()
    if linear.bias is not None:
        linear.bias.zero_()


@torch.no_grad()
def speech_energy_hubert_(encoder: nn.Module, gen: torch.Generator) -> None:
    """`HubertEncoder` whose output channels 2/3 are +/- the audio's short-time energy."""
    model = encoder.hubert
    for index, layer in enumerate(model.feature_extractor.conv_layers):
        _energy_conv_(layer.conv, index, gen)
        _plain_layer_norm_(layer.layer_norm)
    _plain_layer_norm_(model.feature_projection.layer_norm)
    projection = model.feature_projection.projection
    projection.weight.zero_()
    row = torch.zeros(projection.weight.shape[1])
    gain = _PROJECTION_GAIN * _PATTERN / math.sqrt(row.shape[0])  # x b / sqrt(C): undoes the LayerNorm's 1 / std
    row[ENERGY_CHANNELS[0]], row[ENERGY_CHANNELS[1]] = gain, -gain
    _pm_rows(projection.weight, ENERGY_CHANNELS, row)
    _pattern_bias(projection.bias, _PATTERN)
    pos_conv = model.encoder.pos_conv_embed.conv
    pos_conv.parametrizations.weight.original0.zero_()  # weight norm's g = 0: a zero kernel
    pos_conv.bias.zero_()
    for block in model.encoder.layers:
        _zero_(block.attention.out_proj)
        _zero_(block.feed_forward.output_dense)
    _plain_layer_norm_(model.encoder.layer_norm)


def energy_feature(encoding: torch.Tensor) -> torch.Tensor:
    """(..., H) synthetic HuBERT output -> (...,) its energy feature in [0, 1) (0: digital silence)."""
    plus, minus = ENERGY_CHANNELS
    return (encoding[..., plus] - encoding[..., minus]) / 2 / math.sqrt(encoding.shape[-1] / 2)


# LMDM wiring. Residual-stream and condition-token dims: the first rotary pairs carry the positional
# pattern; three +/- pairs at the end carry the energy, the eye-openness condition and the jitter.
_ENERGY_DIMS, _EYE_DIMS, _JITTER_DIMS = (-6, -5), (-4, -3), (-2, -1)
_DITTO_GUIDANCE = 2.0  # x0 = unc + 2 (cond - unc): the conditioned signals reach the output doubled
_X_DIMS = slice(199, 265)  # t and exp of the noisy motion / motion condition that feed the jitter
_JITTER_ROWS = [0, *range(199, 265)]  # scale, t, exp of the output (the pose bins stay clean)


def _carrier(dim: int, pairs: int) -> torch.Tensor:
    """(dim,): rotary pair p < `pairs` holds ((-1)^p, 0); zero mean, so LayerNorm only rescales it."""
    carrier = torch.zeros(dim)
    carrier[0 : 2 * pairs : 2] = torch.tensor([(-1.0) ** p for p in range(pairs)])
    return carrier


def _pm_column(weight: torch.Tensor, dims: tuple[int, int], column: torch.Tensor) -> None:
    """Read the +/- pair `dims` of the input as (x[+] - x[-]) / 2 into `column`'s outputs."""
    weight[:, dims[0]], weight[:, dims[1]] = column / 2, -column / 2


@torch.no_grad()
def lip_sync_lmdm_(step: nn.Module, gen: torch.Generator) -> None:
    """`LMDMStep` whose generated motion opens the lips with the audio energy (module docstring)."""
    model = step.model
    pairs = model.latent_dim // model.seqTransDecoder.stack[0].multihead_attn.num_heads // 2
    carrier = _carrier(model.latent_dim, pairs)
    _silence_branches_(model)
    _condition_tokens_(model, carrier, gen)
    _query_(model, carrier, gen)
    _frame_matching_attention_(model, pairs)
    _motion_readout_(model, pairs, gen)


def _silence_branches_(model: nn.Module) -> None:
    """Every residual branch adds nothing, the FiLMs are identities, the time tokens are zero."""
    for layer in model.cond_encoder:
        _zero_(layer.self_attn.out_proj)
        _zero_(layer.linear2)
    for layer in model.seqTransDecoder.stack:
        for branch in (layer.self_attn.out_proj, layer.multihead_attn.out_proj, layer.linear2):
            _zero_(branch)
        for film in (layer.film1, layer.film2, layer.film3):
            _zero_(film.block[1])
    _zero_(model.to_time_tokens[0])
    _plain_layer_norm_(model.norm_cond)
    _plain_layer_norm_(model.seqTransDecoder.stack[0].norm2)


def _condition_tokens_(model: nn.Module, carrier: torch.Tensor, gen: torch.Generator) -> None:
    """Token i = the key pattern + frame i's energy, eye openness and a little of its other conditions."""
    projection = model.cond_projection
    audio = projection.weight.shape[1] - 79  # audio | emo 8 | eye_open 2 | eye_ball 6 | sc 63
    projection.weight.zero_()
    projection.bias.copy_(carrier)
    energy = torch.zeros(projection.weight.shape[1])
    energy[ENERGY_CHANNELS[0]] = 1 / (2 * math.sqrt(audio / 2))  # = energy_feature()
    energy[ENERGY_CHANNELS[1]] = -energy[ENERGY_CHANNELS[0]]
    _pm_rows(projection.weight, _ENERGY_DIMS, energy)
    eyes = torch.zeros_like(energy)
    eyes[audio + 8 : audio + 10] = 0.5  # the mean of both eyes' openness
    _pm_rows(projection.weight, _EYE_DIMS, eyes)
    others = torch.zeros_like(energy)
    others[audio:] = torch.randn(79, generator=gen) / math.sqrt(79)
    _pm_rows(projection.weight, _JITTER_DIMS, others)
    model.null_cond_embed.copy_(carrier.expand_as(model.null_cond_embed))  # unconditional: no signals
    model.null_cond_hidden.zero_()


def _query_(model: nn.Module, carrier: torch.Tensor, gen: torch.Generator) -> None:
    """Every frame's query is the pattern, plus a jitter from the noisy motion and the condition frame."""
    projection = model.input_projection
    motion = model.motion_dim
    projection.weight.zero_()
    projection.bias.copy_(carrier)
    row = torch.zeros(projection.weight.shape[1])
    for start in (0, motion):
        row[start + _X_DIMS.start : start + _X_DIMS.stop] = torch.randn(66, generator=gen) / math.sqrt(132)
    _pm_rows(projection.weight, _JITTER_DIMS, row)


def _frame_matching_attention_(model: nn.Module, pairs: int) -> None:
    """First decoder layer: head 0 attends from frame i to condition token i and copies its signals."""
    attention = model.seqTransDecoder.stack[0].multihead_attn
    d = model.latent_dim
    scale = _attention_scale(model, pairs, d // attention.num_heads)
    weight = attention.in_proj_weight
    weight.zero_()
    attention.in_proj_bias.zero_()
    weight[: 2 * pairs, : 2 * pairs] = scale * torch.eye(2 * pairs)  # queries
    weight[d : d + 2 * pairs, : 2 * pairs] = scale * torch.eye(2 * pairs)  # keys
    out = attention.out_proj.weight
    for value, dims in enumerate((_ENERGY_DIMS, _EYE_DIMS, _JITTER_DIMS)):
        weight[2 * d + value, dims[0]], weight[2 * d + value, dims[1]] = 0.5, -0.5
        out[dims[0], value], out[dims[1], value] = 1.0, -1.0


def _attention_scale(model: nn.Module, pairs: int, head_dim: int) -> float:
    """q = k = scale x the normalised pattern: the matching token's logit leads every other by the gap."""
    freqs = model.rotary.freqs[:pairs].double()
    offsets = torch.arange(1, model.seq_frames + 2, dtype=torch.float64)  # + the 2 time tokens
    worst = (1 - torch.cos(offsets[:, None] * freqs[None])).sum(dim=1).min().item()
    normalised = model.latent_dim / pairs  # LayerNorm turns the pattern's +/-1 into +/-sqrt(d / pairs)
    return math.sqrt(_ATTENTION_GAP * math.sqrt(head_dim) / (worst * normalised))


def _motion_readout_(model: nn.Module, pairs: int, gen: torch.Generator) -> None:
    """Final layer: the frontal, neutral base motion plus lips, nod and eyelids from the signals."""
    final = model.final_layer
    bins = (model.motion_dim - 4 - 63) // 3
    per_unit = 1 / (_DITTO_GUIDANCE * math.sqrt(model.latent_dim / pairs))  # signal -> energy feature units
    final.weight.zero_()
    final.bias.zero_()
    for start in (1, 1 + bins, 1 + 2 * bins):
        final.bias[start : start + bins] = frontal_pose_logits(bins)
    lips = torch.zeros(model.motion_dim)
    for kp in LOWER_LIP_KP:
        lips[202 + 3 * kp + 1] = LIP_OPENING
    for kp in UPPER_LIP_KP:
        lips[202 + 3 * kp + 1] = -LIP_OPENING / 3
    centred = torch.arange(bins, dtype=torch.float32) - POSE_BIN_CENTRE
    lips[1 : 1 + bins] = NOD_DEGREES / 3 * centred / POSE_BIN_WIDTH**2  # shifts E[bin] by NOD_DEGREES / 3
    lips[1 + 3 * bins + 1] = BOB
    _pm_column(final.weight, _ENERGY_DIMS, lips * per_unit)
    eyelids = torch.zeros(model.motion_dim)
    for kp in UPPER_EYELID_KP:
        eyelids[202 + 3 * kp + 1] = -EYELID_PER_EYE_OPEN
    _pm_column(final.weight, _EYE_DIMS, eyelids * per_unit)
    jitter = torch.zeros(model.motion_dim)
    jitter[_JITTER_ROWS] = torch.randn(len(_JITTER_ROWS), generator=gen) * _JITTER
    _pm_column(final.weight, _JITTER_DIMS, jitter)
