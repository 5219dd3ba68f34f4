"""Streaming HuBERT audio encoder: the audio condition source of the LMDM (architecture reference §3.7).

Ditto names no paper letter for it (the image networks are F, M, W, G, S); its released engine is
`hubert.onnx` / `hubert_streaming_fix_kv.onnx`. Shapes, batch axis fixed at 1 as in Ditto:

    input_values (1, N) float32, raw 16 kHz waveform
    encoding_out (T, hidden) float32, last hidden state without the batch axis,
                 T = hubert_num_frames(N); 6480 samples -> 20 frames (50 Hz)

The network is `transformers.HubertModel` in HuBERT-Large layout (layer-norm conv front-end with
bias, stable (pre) layer norm, weight-normed positional conv), so checkpoints of that class load
as-is. Ditto ships no PyTorch HuBERT weights; `check_hubert_onnx` validates its ONNX instead.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np
import torch
import transformers
from torch import nn
from torch.nn.utils import parametrize

from ditto_triton.profiles import HubertConfig

CONV_KERNELS = (10, 3, 3, 3, 3, 2, 2)
CONV_STRIDES = (5, 2, 2, 2, 2, 2, 2)
INPUT_NAME = "input_values"
OUTPUT_NAME = "encoding_out"

_PREFIX = "hubert."
_POS_CONV = "encoder.pos_conv_embed.conv."
# The positional conv weight appears under three names: the parametrization of current torch
# (what HubertModel builds), the legacy weight_norm hook (older HF checkpoints) and the folded
# plain weight (after prepare_for_export).
_WN_G, _WN_V = _POS_CONV + "parametrizations.weight.original0", _POS_CONV + "parametrizations.weight.original1"
_LEGACY_G, _LEGACY_V = _POS_CONV + "weight_g", _POS_CONV + "weight_v"
_PLAIN_W = _POS_CONV + "weight"
_WEIGHT_NORM_DIM = 2


def hubert_num_frames(num_samples: int) -> int:
    """Frames the conv front-end emits for `num_samples` samples (0 when too short for one frame)."""
    length = num_samples
    for kernel, stride in zip(CONV_KERNELS, CONV_STRIDES):
        length = (length - kernel) // stride + 1
        if length < 1:
            return 0
    return length


def hubert_model_config(cfg: HubertConfig) -> transformers.HubertConfig:
    """HuBERT-Large layout with `cfg`'s sizes, every stochastic path (dropout, layer drop, masking) off."""
    return transformers.HubertConfig(
        hidden_size=cfg.hidden_size,
        num_hidden_layers=cfg.num_layers,
        num_attention_heads=cfg.num_heads,
        intermediate_size=cfg.intermediate_size,
        conv_dim=(cfg.conv_dim,) * len(CONV_KERNELS),
        conv_kernel=CONV_KERNELS,
        conv_stride=CONV_STRIDES,
        conv_bias=True,
        feat_extract_norm="layer",
        do_stable_layer_norm=True,
        num_conv_pos_embeddings=cfg.conv_pos_kernel,
        num_conv_pos_embedding_groups=cfg.conv_pos_groups,
        hidden_dropout=0.0,
        attention_dropout=0.0,
        activation_dropout=0.0,
        feat_proj_dropout=0.0,
        final_dropout=0.0,
        layerdrop=0.0,
        # mask_time_prob stays > 0 so `masked_spec_embed` exists, as in released HuBERT-Large
        # checkpoints; apply_spec_augment=False means it is never used.
        apply_spec_augment=False,
        attn_implementation="eager",
    )


class HubertEncoder(nn.Module):
    """input_values (1, N) -> encoding_out (T, hidden); see the module docstring."""

    def __init__(self, cfg: HubertConfig) -> None:
        super().__init__()
        self.hubert = transformers.HubertModel(hubert_model_config(cfg))
        self.eval()

    def forward(self, input_values: torch.Tensor) -> torch.Tensor:
        if not torch.jit.is_tracing():
            _check_input(input_values)
        hidden = self.hubert(input_values, return_dict=False)[0]
        # Ditto's engine is batch 1 and emits 2-D rows; the batch axis is not dynamic for this stage.
        return hidden[0]


def _check_input(input_values: torch.Tensor) -> None:
    if input_values.dim() != 2 or input_values.shape[0] != 1:
        raise ValueError(f"{INPUT_NAME} must have shape (1, N), got {tuple(input_values.shape)}")
    if hubert_num_frames(input_values.shape[1]) < 1:
        raise ValueError(f"{INPUT_NAME} has {input_values.shape[1]} samples; at least 400 are needed for one frame")


def prepare_for_export(encoder: HubertEncoder) -> HubertEncoder:
    """Fold the positional conv's weight norm into a plain weight (in place; idempotent) and set eval mode.

    The folded module computes the same function but its state-dict key becomes
    `hubert.encoder.pos_conv_embed.conv.weight` instead of the g/v pair.
    """
    conv = encoder.hubert.encoder.pos_conv_embed.conv
    if parametrize.is_parametrized(conv, "weight"):
        parametrize.remove_parametrizations(conv, "weight", leave_parametrized=True)
    return encoder.eval()


def load_hubert_state_dict(encoder: HubertEncoder, path: str | Path) -> None:
    """Strictly load a HubertModel (or HubertEncoder) checkpoint from .safetensors or .pth/.pt/.bin.

    Keys may carry a `hubert.` prefix or not; the positional conv weight may be stored as the
    parametrization pair, the legacy `weight_g`/`weight_v` pair or a folded `weight`.
    """
    path = Path(path)
    raw = _read_checkpoint(path)
    state, origin = _strip_prefix(raw, path)
    expected = encoder.hubert.state_dict()
    state, origin = _match_weight_norm(state, origin, expected, path)

    problems = []
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    if missing:
        problems.append("missing keys: " + ", ".join(missing))
    if unexpected:
        problems.append("unexpected keys: " + ", ".join(origin[k] for k in unexpected))
    for key in sorted(set(expected) & set(state)):
        want, got = tuple(expected[key].shape), tuple(state[key].shape)
        if want != got:
            problems.append(f"shape mismatch for {origin[key]}: expected {want}, found {got}")
    if problems:
        raise ValueError(f"{path}: checkpoint does not fit the HuBERT encoder; " + "; ".join(problems))
    encoder.hubert.load_state_dict(state, strict=True)


def _read_checkpoint(path: Path) -> Mapping[str, torch.Tensor]:
    if not path.is_file():
        raise ValueError(f"{path}: checkpoint file not found")
    suffix = path.suffix.lower()
    if suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path), device="cpu")
    if suffix in (".pth", ".pt", ".bin"):
        obj = torch.load(path, map_location="cpu", weights_only=True)
        if not isinstance(obj, Mapping) or not all(
            isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in obj.items()
        ):
            raise ValueError(f"{path}: expected a flat state dict of tensors, got {type(obj).__name__}")
        return obj
    raise ValueError(f"{path}: unsupported checkpoint type {suffix!r}; use .safetensors, .pth, .pt or .bin")


def _strip_prefix(raw: Mapping[str, torch.Tensor], path: Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    state: dict[str, torch.Tensor] = {}
    origin: dict[str, str] = {}
    for key, value in raw.items():
        bare = key.removeprefix(_PREFIX)
        if bare in state:
            raise ValueError(f"{path}: key {bare!r} appears both with and without the {_PREFIX!r} prefix")
        state[bare], origin[bare] = value, key
    return state, origin


def _match_weight_norm(
    state: dict[str, torch.Tensor],
    origin: dict[str, str],
    expected: Mapping[str, torch.Tensor],
    path: Path,
) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Rename or fold the positional conv weight to the layout `expected` uses."""
    state, origin = dict(state), dict(origin)
    if _LEGACY_G in state and _LEGACY_V in state:
        for old, new in ((_LEGACY_G, _WN_G), (_LEGACY_V, _WN_V)):
            state[new], origin[new] = state.pop(old), origin.pop(old)
    if _PLAIN_W in expected and _WN_G in state and _WN_V in state:
        weight_shape = tuple(expected[_PLAIN_W].shape)
        g_shape = tuple(n if i == _WEIGHT_NORM_DIM else 1 for i, n in enumerate(weight_shape))
        for key, want in ((_WN_G, g_shape), (_WN_V, weight_shape)):
            if tuple(state[key].shape) != want:
                raise ValueError(
                    f"{path}: shape mismatch for {origin[key]}: expected {want}, found {tuple(state[key].shape)}"
                )
        g, v = state.pop(_WN_G), state.pop(_WN_V)
        origin.pop(_WN_V)
        folded = torch._weight_norm(v.float(), g.float(), _WEIGHT_NORM_DIM)
        state[_PLAIN_W], origin[_PLAIN_W] = folded, origin.pop(_WN_G)
    elif _WN_G in expected and _PLAIN_W in state:
        raise ValueError(
            f"{path}: {origin[_PLAIN_W]} is a folded weight; load it before prepare_for_export, "
            "or into an encoder that prepare_for_export has folded"
        )
    return state, origin


def check_hubert_onnx(path: str | Path, cfg: HubertConfig) -> None:
    """Validate a user-supplied HuBERT ONNX (e.g. Ditto's `hubert_streaming_fix_kv.onnx`) before use.

    Requires a single rank-2 float input `input_values` and a rank-2 output `encoding_out` whose
    static last dim (if any) is cfg.hidden_size, and that `cfg.window_samples` zeros give
    (cfg.window_frames, cfg.hidden_size) finite values on onnxruntime's CPU provider.
    """
    import onnxruntime as ort

    path = Path(path)
    if not path.is_file():
        raise ValueError(f"{path}: ONNX file not found")
    try:
        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime raises several unrelated exception types
        raise ValueError(f"{path}: onnxruntime cannot load the model: {exc}") from exc

    inputs = {i.name: i for i in session.get_inputs()}
    outputs = {o.name: o for o in session.get_outputs()}
    if INPUT_NAME not in inputs:
        raise ValueError(f"{path}: no input named {INPUT_NAME!r} (inputs: {sorted(inputs)})")
    if len(inputs) != 1:
        raise ValueError(f"{path}: expected the single input {INPUT_NAME!r}, found {sorted(inputs)}")
    if OUTPUT_NAME not in outputs:
        raise ValueError(f"{path}: no output named {OUTPUT_NAME!r} (outputs: {sorted(outputs)})")

    inp, out = inputs[INPUT_NAME], outputs[OUTPUT_NAME]
    if len(inp.shape) != 2:
        raise ValueError(f"{path}: input {INPUT_NAME!r} has rank {len(inp.shape)} (shape {inp.shape}), expected 2")
    if inp.type != "tensor(float)":
        raise ValueError(f"{path}: input {INPUT_NAME!r} has type {inp.type}, expected tensor(float)")
    if len(out.shape) != 2:
        raise ValueError(f"{path}: output {OUTPUT_NAME!r} has rank {len(out.shape)} (shape {out.shape}), expected 2")
    last = out.shape[-1]
    if isinstance(last, int) and last != cfg.hidden_size:
        raise ValueError(f"{path}: output {OUTPUT_NAME!r} has last dim {last}, expected hidden size {cfg.hidden_size}")

    window = np.zeros((1, cfg.window_samples), dtype=np.float32)
    try:
        (result,) = session.run([OUTPUT_NAME], {INPUT_NAME: window})
    except Exception as exc:
        raise ValueError(f"{path}: running on {cfg.window_samples} zero samples failed: {exc}") from exc
    want = (cfg.window_frames, cfg.hidden_size)
    if tuple(result.shape) != want:
        raise ValueError(
            f"{path}: {cfg.window_samples} samples gave {OUTPUT_NAME!r} of shape {tuple(result.shape)}, expected {want}"
        )
    if not np.isfinite(result).all():
        raise ValueError(f"{path}: {OUTPUT_NAME!r} contains NaN or Inf for {cfg.window_samples} zero samples")
