"""Stitching network S: shapes, checkpoint keys, parameter count and forward semantics."""

from __future__ import annotations

import pytest
import torch

from ditto_triton.export.networks.stitch_network import StitchingNetwork
from ditto_triton.profiles import FULL, TINY
from ditto_triton.stages import stage_specs

SPEC = stage_specs(TINY)["stitch_network"]


def _inputs(batch: int) -> tuple[torch.Tensor, torch.Tensor]:
    return tuple(torch.randn(t.example_shape(batch)) for t in SPEC.inputs)  # type: ignore[return-value]


@pytest.mark.parametrize("batch", [1, 2])
def test_output_shape(batch: int) -> None:
    torch.manual_seed(0)
    net = StitchingNetwork(TINY.stitch).eval()
    with torch.no_grad():
        out = net(*_inputs(batch))
    assert tuple(out.shape) == SPEC.outputs[0].example_shape(batch)


def test_state_dict_keys_and_shapes_full() -> None:
    shapes = {k: tuple(v.shape) for k, v in StitchingNetwork(FULL.stitch).state_dict().items()}
    assert shapes == {
        "mlp.0.weight": (128, 126),
        "mlp.0.bias": (128,),
        "mlp.2.weight": (128, 128),
        "mlp.2.bias": (128,),
        "mlp.4.weight": (64, 128),
        "mlp.4.bias": (64,),
        "mlp.6.weight": (65, 64),
        "mlp.6.bias": (65,),
    }


def test_state_dict_keys_tiny() -> None:
    keys = set(StitchingNetwork(TINY.stitch).state_dict())
    assert keys == {f"mlp.{i}.{p}" for i in (0, 2, 4, 6) for p in ("weight", "bias")}


def test_full_parameter_count() -> None:
    assert sum(p.numel() for p in StitchingNetwork(FULL.stitch).parameters()) == 45_249


def test_final_bias_shifts_keypoints() -> None:
    """Zero weights + a chosen final bias: delta[:3K] per keypoint, delta[3K:3K+2] on x, y of all."""
    torch.manual_seed(0)
    k = TINY.stitch.num_kp
    net = StitchingNetwork(TINY.stitch).eval()
    bias = torch.randn(3 * k + 2)
    with torch.no_grad():
        for p in net.parameters():
            p.zero_()
        net.mlp[-1].bias.copy_(bias)
    kp_source, kp_driving = _inputs(2)
    with torch.no_grad():
        out = net(kp_source, kp_driving)
    expected = kp_driving + bias[: 3 * k].reshape(k, 3)
    expected[..., 0] += bias[3 * k]
    expected[..., 1] += bias[3 * k + 1]
    torch.testing.assert_close(out, expected, rtol=0, atol=1e-6)
    assert not torch.equal(kp_driving, out)


def test_source_then_driving_concatenation() -> None:
    """The first Linear sees flatten(kp_source) in columns [0, 3K) and flatten(kp_driving) after."""
    torch.manual_seed(0)
    k = TINY.stitch.num_kp
    net = StitchingNetwork(TINY.stitch).eval()
    kp_source, kp_driving = _inputs(2)
    with torch.no_grad():
        net.mlp[0].weight[:, 3 * k :].zero_()  # driving columns no longer matter for delta
        out_a = net(kp_source, kp_driving)
        out_b = net(kp_source, kp_driving + 1.0)
        out_c = net(kp_source + 1.0, kp_driving)
    torch.testing.assert_close(out_b - out_a, torch.ones_like(out_a), rtol=0, atol=1e-5)
    assert (out_c - out_a).abs().max() > 1e-4


def test_batch_rows_independent() -> None:
    torch.manual_seed(0)
    net = StitchingNetwork(TINY.stitch).eval()
    kp_source, kp_driving = _inputs(2)
    with torch.no_grad():
        both = net(kp_source, kp_driving)
        second = net(kp_source[1:], kp_driving[1:])
    torch.testing.assert_close(both[1:], second)
