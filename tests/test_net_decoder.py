"""SPADE decoder G: shapes, spectral-norm checkpoint layout, parameter count and spectral-norm folding."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from ditto_triton.export.networks.decoder import SPADEDecoder, fold_spectral_norm
from ditto_triton.profiles import FULL, TINY
from ditto_triton.stages import stage_specs

FULL_PARAMS = 55_365_388  # architecture reference §3.4: 55.37 M (weight_u / weight_v are buffers, not counted)
FULL_UV_NUMEL = 72_960
BLOCKS = [f"G_middle_{i}" for i in range(6)] + ["up_0", "up_1"]
SHORTCUT_BLOCKS = ("up_0", "up_1")
SPECTRAL = ("weight_orig", "weight_u", "weight_v")


def _expected_keys() -> set[str]:
    keys = {"fc.weight", "fc.bias", "conv_img.0.weight", "conv_img.0.bias"}
    for block in BLOCKS:
        norms = ["norm_0", "norm_1"] + (["norm_s"] if block in SHORTCUT_BLOCKS else [])
        for norm in norms:
            for mlp in ("mlp_shared.0", "mlp_gamma", "mlp_beta"):
                keys |= {f"{block}.{norm}.{mlp}.weight", f"{block}.{norm}.{mlp}.bias"}
        for conv in ("conv_0", "conv_1"):
            keys |= {f"{block}.{conv}.{p}" for p in (*SPECTRAL, "bias")}
        if block in SHORTCUT_BLOCKS:
            keys |= {f"{block}.conv_s.{p}" for p in SPECTRAL}  # no bias on the shortcut
    return keys


def _spectral_convs(model: nn.Module) -> list[nn.Module]:
    return [m for m in model.modules() if hasattr(m, "weight_orig")]


def _decoder(profile, seed: int) -> SPADEDecoder:
    """A decoder whose u, v are the true top singular vectors, as in a trained checkpoint."""
    torch.manual_seed(seed)
    model = SPADEDecoder(profile.decoder)
    with torch.no_grad():
        for conv in _spectral_convs(model):
            u, _, vh = torch.linalg.svd(conv.weight_orig.reshape(conv.weight_orig.shape[0], -1), full_matrices=False)
            conv.weight_u.copy_(u[:, 0])
            conv.weight_v.copy_(vh[0])
    return model.eval()


def _feature(batch: int) -> torch.Tensor:
    spec = stage_specs(TINY)["decoder"].inputs[0]
    return torch.randn(spec.example_shape(batch))


@pytest.fixture(scope="module")
def tiny() -> SPADEDecoder:
    return _decoder(TINY, seed=0)


@pytest.mark.parametrize("batch", [1, 2])
def test_output_shape_and_range_tiny(tiny: SPADEDecoder, batch: int) -> None:
    torch.manual_seed(1)
    with torch.no_grad():
        out = tiny(3 * _feature(batch))
    expected = stage_specs(TINY)["decoder"].outputs[0].example_shape(batch)
    assert tuple(out.shape) == expected == (batch, 3, 128, 128)
    assert out.min() >= 0 and out.max() <= 1
    assert out.std() > 1e-3  # not saturated to a constant


def test_batch_items_are_independent(tiny: SPADEDecoder) -> None:
    torch.manual_seed(2)
    feature = _feature(2)
    with torch.no_grad():
        joint = tiny(feature)
        single = torch.cat([tiny(feature[i : i + 1]) for i in range(2)])
    torch.testing.assert_close(joint, single, rtol=1e-5, atol=1e-6)


def test_state_dict_keys_tiny(tiny: SPADEDecoder) -> None:
    state = tiny.state_dict()
    assert set(state) == _expected_keys()
    assert len(state) == 182
    cin, hidden = TINY.decoder.input_channels, TINY.decoder.spade_hidden  # 16, 16
    shapes = {
        "fc.weight": (2 * cin, cin, 3, 3),
        "G_middle_0.conv_0.weight_orig": (2 * cin, 2 * cin, 3, 3),
        "G_middle_0.conv_0.weight_u": (2 * cin,),
        "G_middle_0.conv_0.weight_v": (2 * cin * 9,),
        "G_middle_5.norm_1.mlp_shared.0.weight": (hidden, cin, 3, 3),
        "G_middle_5.norm_1.mlp_gamma.weight": (2 * cin, hidden, 3, 3),
        "up_0.conv_s.weight_orig": (cin, 2 * cin, 1, 1),
        "up_0.conv_s.weight_v": (2 * cin,),
        "up_1.conv_0.weight_orig": (TINY.decoder.out_channels, cin, 3, 3),
        "up_1.norm_s.mlp_beta.bias": (cin,),
        "conv_img.0.weight": (12, TINY.decoder.out_channels, 3, 3),
    }
    for key, shape in shapes.items():
        assert tuple(state[key].shape) == shape, key


def test_full_parameter_count_and_layout() -> None:
    model = SPADEDecoder(FULL.decoder)
    assert sum(p.numel() for p in model.parameters()) == FULL_PARAMS
    state = model.state_dict()
    assert set(state) == _expected_keys()
    uv = sum(v.numel() for k, v in state.items() if k.endswith(("weight_u", "weight_v")))
    assert uv == FULL_UV_NUMEL
    assert tuple(state["fc.weight"].shape) == (512, 256, 3, 3)
    assert tuple(state["up_1.conv_s.weight_orig"].shape) == (64, 256, 1, 1)
    assert tuple(state["G_middle_0.norm_0.mlp_shared.0.weight"].shape) == (128, 256, 3, 3)
    assert tuple(state["conv_img.0.weight"].shape) == (12, 64, 3, 3)


def test_fold_spectral_norm_keeps_outputs_and_plain_weights() -> None:
    model = _decoder(TINY, seed=3)
    torch.manual_seed(4)
    feature = 3 * _feature(2)
    expected_w = {}
    for name, conv in model.named_modules():
        if hasattr(conv, "weight_orig"):
            w = conv.weight_orig.detach()
            sigma = torch.dot(conv.weight_u, w.reshape(w.shape[0], -1) @ conv.weight_v)
            expected_w[name] = w / sigma
    with torch.no_grad():
        before = model(feature)
    fold_spectral_norm(model)
    with torch.no_grad():
        after = model(feature)
    torch.testing.assert_close(after, before, rtol=0, atol=1e-6)

    state = model.state_dict()
    assert not any(k.endswith(SPECTRAL) for k in state)
    assert len(state) == 182 - 2 * 18  # 18 spectral convs: 3 keys each become 1
    for name, weight in expected_w.items():
        assert isinstance(model.get_submodule(name).weight, nn.Parameter)
        torch.testing.assert_close(state[f"{name}.weight"], weight, rtol=1e-6, atol=0)
    assert not any(m._forward_pre_hooks for m in model.modules())
    assert "up_0.conv_s.bias" not in state


def test_fold_in_train_mode_uses_stored_vectors() -> None:
    """Folding never runs a power iteration, whatever the module mode, so u and v are not updated first."""
    model = _decoder(TINY, seed=5)
    reference = _decoder(TINY, seed=5)
    model.train()
    fold_spectral_norm(model)
    fold_spectral_norm(reference)
    for key, value in reference.state_dict().items():
        assert torch.equal(model.state_dict()[key], value), key


@pytest.mark.slow
def test_full_forward_shape() -> None:
    model = _decoder(FULL, seed=6)
    fold_spectral_norm(model)
    torch.manual_seed(7)
    with torch.no_grad():
        out = model(torch.randn(1, 256, 64, 64))
    assert tuple(out.shape) == (1, 3, 512, 512)
    assert out.min() >= 0 and out.max() <= 1
