"""LMDM MotionDecoder / LMDMStep: checkpoint keys (architecture reference §3.6), shapes, CFG and schedule."""

from __future__ import annotations

import math

import pytest
import torch

from ditto_triton.diffusion_schedule import cosine_alphas_cumprod
from ditto_triton.export.networks.lmdm import LMDMStep, MotionDecoder, RotaryEmbedding, SinusoidalPosEmb
from ditto_triton.profiles import FULL, TINY, LMDMConfig
from ditto_triton.stages import stage_specs

CFG = TINY.lmdm
FULL_PARAMS = 47_788_297


def _expected_keys(cfg: LMDMConfig) -> set[str]:
    """The checkpoint's MotionDecoder key pattern, written out from §3.6."""
    wb = ("weight", "bias")
    mha = ("in_proj_weight", "in_proj_bias", "out_proj.weight", "out_proj.bias")
    keys = {"null_cond_embed", "null_cond_hidden", "rotary.freqs"}
    for mod in (
        "input_projection",
        "time_mlp.1",
        "to_time_cond.0",
        "to_time_tokens.0",
        "norm_cond",
        "cond_projection",
        "non_attn_cond_projection.0",
        "non_attn_cond_projection.1",
        "non_attn_cond_projection.3",
        "final_layer",
    ):
        keys |= {f"{mod}.{p}" for p in wb}
    for i in range(cfg.num_cond_layers):
        p = f"cond_encoder.{i}"
        keys |= {f"{p}.self_attn.{k}" for k in mha} | {f"{p}.rotary.freqs"}
        keys |= {f"{p}.{m}.{w}" for m in ("linear1", "linear2", "norm1", "norm2") for w in wb}
    for i in range(cfg.num_layers):
        p = f"seqTransDecoder.stack.{i}"
        keys |= {f"{p}.{a}.{k}" for a in ("self_attn", "multihead_attn") for k in mha} | {f"{p}.rotary.freqs"}
        keys |= {f"{p}.{m}.{w}" for m in ("linear1", "linear2", "norm1", "norm2", "norm3") for w in wb}
        keys |= {f"{p}.film{j}.block.1.{w}" for j in (1, 2, 3) for w in wb}
    return keys


def _inputs(cfg: LMDMConfig, batch: int, t: int | list[int] = 500) -> tuple[torch.Tensor, ...]:
    times = torch.tensor(t if isinstance(t, list) else [t] * batch, dtype=torch.int64)
    return (
        torch.randn(batch, cfg.seq_frames, cfg.motion_dim),
        torch.randn(batch, cfg.motion_dim),
        torch.randn(batch, cfg.seq_frames, cfg.cond_dim),
        times,
    )


@pytest.fixture(scope="module")
def step() -> LMDMStep:
    torch.manual_seed(0)
    net = LMDMStep(CFG).eval()
    with torch.no_grad():  # non-trivial LayerNorm affines, like the synthetic initializer
        for name, p in net.named_parameters():
            if "norm" in name:
                p.add_(torch.randn_like(p) * 0.2)
    return net


def test_state_dict_keys_tiny() -> None:
    sd = MotionDecoder(CFG).state_dict()
    assert set(sd) == _expected_keys(CFG)
    assert len(sd) == 23 + 13 * CFG.num_cond_layers + 25 * CFG.num_layers  # top-level + encoder + decoder layers
    d = CFG.latent_dim
    shapes = {
        "input_projection.weight": (d, 2 * CFG.motion_dim),
        "null_cond_embed": (1, CFG.seq_frames, d),
        "null_cond_hidden": (1, d),
        "cond_projection.weight": (d, CFG.cond_dim),
        f"seqTransDecoder.stack.{CFG.num_layers - 1}.film3.block.1.weight": (2 * d, d),
        "seqTransDecoder.stack.0.multihead_attn.in_proj_weight": (3 * d, d),
        f"cond_encoder.{CFG.num_cond_layers - 1}.linear1.weight": (CFG.ff_size, d),
        "to_time_tokens.0.weight": (2 * d, 4 * d),
        "final_layer.weight": (CFG.motion_dim, d),
    }
    for key, shape in shapes.items():
        assert tuple(sd[key].shape) == shape, key


def test_state_dict_keys_and_shapes_full() -> None:
    net = MotionDecoder(FULL.lmdm)
    sd = net.state_dict()
    assert set(sd) == _expected_keys(FULL.lmdm) and len(sd) == 249
    shapes = {
        "input_projection.weight": (512, 530),
        "time_mlp.1.weight": (2048, 512),
        "to_time_cond.0.weight": (512, 2048),
        "to_time_tokens.0.weight": (1024, 2048),
        "null_cond_embed": (1, 80, 512),
        "null_cond_hidden": (1, 512),
        "cond_projection.weight": (512, 1103),
        "non_attn_cond_projection.3.weight": (512, 512),
        "cond_encoder.0.self_attn.in_proj_weight": (1536, 512),
        "seqTransDecoder.stack.3.film2.block.1.weight": (1024, 512),
        "seqTransDecoder.stack.5.linear2.weight": (512, 1024),
        "final_layer.weight": (265, 512),
        "seqTransDecoder.stack.7.rotary.freqs": (256,),
    }
    for key, shape in shapes.items():
        assert tuple(sd[key].shape) == shape, key
    assert sum(p.numel() for p in net.parameters()) == FULL_PARAMS


def test_rotary_shared_and_kept() -> None:
    net = MotionDecoder(CFG)
    rotaries = {id(m) for m in net.modules() if isinstance(m, RotaryEmbedding)}
    assert len(rotaries) == 1 and RotaryEmbedding.synthetic_keep
    d = CFG.latent_dim
    expected = 1.0 / 10000 ** (torch.arange(0, d, 2, dtype=torch.float64) / d)
    sd = net.state_dict()
    freq_keys = [k for k in sd if k.endswith("rotary.freqs")]
    assert len(freq_keys) == 1 + CFG.num_cond_layers + CFG.num_layers
    for k in freq_keys:
        torch.testing.assert_close(sd[k].double(), expected, rtol=1e-6, atol=0)


def test_rotary_is_interleaved_complex_rotation() -> None:
    torch.manual_seed(1)
    rot = RotaryEmbedding(8)
    x = torch.randn(2, 5, 8)
    pos = torch.arange(5, dtype=torch.float64)[:, None]
    phase = torch.polar(torch.ones(5, 4, dtype=torch.float64), pos * rot.freqs.double())
    expected = torch.view_as_real(torch.view_as_complex(x.double().unflatten(-1, (4, 2)).contiguous()) * phase)
    torch.testing.assert_close(rot(x, 5).double(), expected.flatten(-2), rtol=1e-5, atol=1e-5)


def test_sinusoidal_time_embedding() -> None:
    emb = SinusoidalPosEmb(8)(torch.tensor([0, 37], dtype=torch.int64))
    f = torch.tensor([math.exp(-i * math.log(10000) / 3) for i in range(4)])
    torch.testing.assert_close(emb[1], torch.cat(((37 * f).sin(), (37 * f).cos())), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(emb[0], torch.tensor([0.0] * 4 + [1.0] * 4))


def test_schedule_buffers_not_in_state_dict(step: LMDMStep) -> None:
    assert set(step.state_dict()) == {f"model.{k}" for k in _expected_keys(CFG)}
    torch.testing.assert_close(
        step.schedule.alphas_cumprod, torch.tensor(cosine_alphas_cumprod(CFG.n_timestep), dtype=torch.float32)
    )


@pytest.mark.parametrize("batch", [1, 2])
def test_shapes_tiny(step: LMDMStep, batch: int) -> None:
    spec = stage_specs(TINY)["lmdm"]
    args = _inputs(CFG, batch)
    for arg, tspec in zip(args, spec.inputs):
        assert tuple(arg.shape) == tspec.example_shape(batch)
    with torch.no_grad():
        outs = step(*args)
        x0 = step.model(*args)
    assert len(outs) == len(spec.outputs)
    for out, tspec in zip(outs, spec.outputs):
        assert tuple(out.shape) == tspec.example_shape(batch) and out.dtype == torch.float32
        assert torch.isfinite(out).all()
    assert x0.shape == (batch, CFG.seq_frames, CFG.motion_dim)


def test_batched_cfg_equals_two_separate_passes(step: LMDMStep) -> None:
    torch.manual_seed(2)
    x, cond_frame, cond, t = _inputs(CFG, 2, [999, 37])
    with torch.no_grad():
        pred_noise, x_start = step(x, cond_frame, cond, t)
        unc = step.model(x, cond_frame, cond, t, drop_cond=True)
        conditioned = step.model(x, cond_frame, cond, t, drop_cond=False)
    expected_x0 = unc + CFG.guidance_weight * (conditioned - unc)
    torch.testing.assert_close(x_start, expected_x0, rtol=1e-5, atol=1e-5)
    a_bar = torch.tensor(cosine_alphas_cumprod(CFG.n_timestep))[t][:, None, None]
    expected_eps = (x.double() - a_bar.sqrt() * expected_x0.double()) / (1 - a_bar).sqrt()
    torch.testing.assert_close(pred_noise.double(), expected_eps, rtol=1e-4, atol=1e-4)
    assert not torch.allclose(unc, conditioned, atol=1e-3)


def test_guidance_weight_input_is_per_sample(step: LMDMStep) -> None:
    torch.manual_seed(8)
    x, cond_frame, cond, t = _inputs(CFG, 2, [500, 500])
    with torch.no_grad():
        unc = step.model(x, cond_frame, cond, t, drop_cond=True)
        conditioned = step.model(x, cond_frame, cond, t, drop_cond=False)
        default = step(x, cond_frame, cond, t)[1]
        same = step(x, cond_frame, cond, t, torch.full((2,), CFG.guidance_weight))[1]
        mixed = step(x, cond_frame, cond, t, torch.tensor([0.0, 3.5]))[1]
    torch.testing.assert_close(same, default, rtol=0, atol=0)
    torch.testing.assert_close(mixed[0], unc[0], rtol=1e-5, atol=1e-5)  # weight 0: the unconditional pass
    torch.testing.assert_close(mixed[1], unc[1] + 3.5 * (conditioned[1] - unc[1]), rtol=1e-5, atol=1e-5)


def test_predict_noise_inverts_forward_process(step: LMDMStep) -> None:
    torch.manual_seed(3)
    x0, eps = torch.randn(3, 4, 5), torch.randn(3, 4, 5)
    t = torch.tensor([999, 500, 37])
    a_bar = step.schedule.alphas_cumprod[t][:, None, None]
    x_t = a_bar.sqrt() * x0 + (1 - a_bar).sqrt() * eps
    torch.testing.assert_close(step.schedule.predict_noise(x_t, x0, t), eps, rtol=1e-4, atol=1e-4)


def test_null_pass_keeps_cond_frame_and_drops_cond(step: LMDMStep) -> None:
    torch.manual_seed(4)
    x, cond_frame, cond, t = _inputs(CFG, 1)
    with torch.no_grad():
        base = step.model(x, cond_frame, cond, t, drop_cond=True)
        other_cond = step.model(x, cond_frame, torch.randn_like(cond), t, drop_cond=True)
        other_frame = step.model(x, torch.randn_like(cond_frame), cond, t, drop_cond=True)
        cond_pass = step.model(x, cond_frame, cond, t)
        cond_pass_other = step.model(x, cond_frame, torch.randn_like(cond), t)
    torch.testing.assert_close(base, other_cond, rtol=0, atol=0)
    assert not torch.allclose(base, other_frame, atol=1e-3)
    assert not torch.allclose(cond_pass, cond_pass_other, atol=1e-3)


def test_time_cond_changes_output(step: LMDMStep) -> None:
    torch.manual_seed(5)
    x, cond_frame, cond, _ = _inputs(CFG, 1)
    with torch.no_grad():
        outs = [step(x, cond_frame, cond, torch.tensor([t]))[1] for t in (999, 500, 37)]
    assert not torch.allclose(outs[0], outs[1], atol=1e-3)
    assert not torch.allclose(outs[1], outs[2], atol=1e-3)


def test_batch_rows_are_independent(step: LMDMStep) -> None:
    torch.manual_seed(6)
    args = _inputs(CFG, 2, [999, 37])
    with torch.no_grad():
        both = step(*args)
        singles = [step(*(a[i : i + 1] for a in args)) for i in range(2)]
    for j in range(2):
        torch.testing.assert_close(both[j], torch.cat([s[j] for s in singles]), rtol=1e-4, atol=1e-4)


def test_eval_is_deterministic(step: LMDMStep) -> None:
    args = _inputs(CFG, 1)
    with torch.no_grad():
        torch.testing.assert_close(step(*args), step(*args), rtol=0, atol=0)


@pytest.mark.slow
def test_full_forward_shapes() -> None:
    torch.manual_seed(0)
    net = LMDMStep(FULL.lmdm).eval()
    with torch.no_grad():
        pred_noise, x_start = net(*_inputs(FULL.lmdm, 2, [999, 37]))
    assert pred_noise.shape == x_start.shape == (2, 80, 265)
    assert torch.isfinite(pred_noise).all() and torch.isfinite(x_start).all()
