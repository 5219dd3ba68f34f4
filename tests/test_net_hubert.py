"""Streaming HuBERT encoder: shapes, frame rule, checkpoints, export folding and ONNX validation."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from onnx import TensorProto, helper
from safetensors.torch import save_file

from ditto_triton.export.networks.hubert import (
    HubertEncoder,
    check_hubert_onnx,
    hubert_num_frames,
    load_hubert_state_dict,
    prepare_for_export,
)
from ditto_triton.profiles import FULL, TINY
from ditto_triton.stages import stage_specs

CFG = TINY.hubert
SPEC = stage_specs(TINY)["hubert"]
POS_CONV = "hubert.encoder.pos_conv_embed.conv."
FULL_PARAMS = 315_438_720  # HuBERT-Large incl. masked_spec_embed (architecture reference §3.7: ~316 M)


def make(seed: int = 0) -> HubertEncoder:
    torch.manual_seed(seed)
    return HubertEncoder(CFG)


def run(encoder: HubertEncoder, x: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return encoder(x)


def wave(n: int, seed: int = 1) -> torch.Tensor:
    return torch.randn(1, n, generator=torch.Generator().manual_seed(seed))


def test_window_gives_twenty_frames() -> None:
    out = run(make(), wave(CFG.window_samples))
    assert out.shape == (CFG.window_frames, CFG.hidden_size) == (20, 64)
    assert out.dtype == torch.float32
    assert SPEC.input_names == ["input_values"] and SPEC.output_names == ["encoding_out"]


@pytest.mark.parametrize(
    ("samples", "frames"), [(399, 0), (400, 1), (719, 1), (720, 2), (3240, 9), (6480, 20), (12960, 40)]
)
def test_frame_rule(samples: int, frames: int) -> None:
    assert hubert_num_frames(samples) == frames


def test_frame_rule_is_400_window_320_hop() -> None:
    for n in range(400, 20000, 37):
        assert hubert_num_frames(n) == (n - 400) // 320 + 1


@pytest.mark.parametrize("samples", [400, 3240, 7001, 12960])
def test_other_lengths_follow_frame_rule(samples: int) -> None:
    assert run(make(), wave(samples)).shape == (hubert_num_frames(samples), CFG.hidden_size)


@pytest.mark.parametrize("shape", [(2, 6480), (6480,), (1, 399)])
def test_bad_input_is_refused(shape: tuple[int, ...]) -> None:
    with pytest.raises(ValueError, match="input_values"):
        run(make(), torch.zeros(shape))


def test_no_stochastic_paths_even_in_train_mode() -> None:
    encoder = make()
    assert not encoder.training
    x = wave(6480)
    expected = run(encoder, x)
    encoder.train()
    torch.testing.assert_close(run(encoder, x), expected, rtol=0, atol=0)


def test_stable_layer_norm_layout() -> None:
    # HuBERT-Large normalises after the last layer (pre-LN stack); the post-LN layout would not
    # make the output equal to the final layer norm's bias.
    encoder = make()
    with torch.no_grad():
        encoder.hubert.encoder.layer_norm.weight.zero_()
        encoder.hubert.encoder.layer_norm.bias.fill_(0.5)
    out = run(encoder, wave(6480))
    torch.testing.assert_close(out, torch.full_like(out, 0.5))


def test_state_dict_keys() -> None:
    state = make().state_dict()
    assert len(state) == 70  # 7 conv layers x 4 + projection 4 + masked embed + pos conv 3 + final LN 2 + 2 layers x 16
    for key, shape in {
        "hubert.masked_spec_embed": (64,),
        "hubert.feature_extractor.conv_layers.0.conv.weight": (32, 1, 10),
        "hubert.feature_extractor.conv_layers.0.conv.bias": (32,),
        "hubert.feature_extractor.conv_layers.0.layer_norm.weight": (32,),
        "hubert.feature_extractor.conv_layers.6.conv.weight": (32, 32, 2),
        "hubert.feature_projection.layer_norm.weight": (32,),
        "hubert.feature_projection.projection.weight": (64, 32),
        POS_CONV + "bias": (64,),
        POS_CONV + "parametrizations.weight.original0": (1, 1, 128),
        POS_CONV + "parametrizations.weight.original1": (64, 16, 128),
        "hubert.encoder.layer_norm.bias": (64,),
        "hubert.encoder.layers.1.attention.q_proj.weight": (64, 64),
        "hubert.encoder.layers.1.attention.out_proj.bias": (64,),
        "hubert.encoder.layers.0.layer_norm.weight": (64,),
        "hubert.encoder.layers.0.feed_forward.intermediate_dense.weight": (128, 64),
        "hubert.encoder.layers.0.feed_forward.output_dense.weight": (64, 128),
        "hubert.encoder.layers.0.final_layer_norm.bias": (64,),
    }.items():
        assert tuple(state[key].shape) == shape, key
    assert not any(k.startswith("hubert.encoder.layers.2.") for k in state)


def test_full_parameter_count() -> None:
    with torch.device("meta"):
        encoder = HubertEncoder(FULL.hubert)
    assert sum(p.numel() for p in encoder.parameters()) == FULL_PARAMS
    assert len(encoder.state_dict()) == 422


def test_prepare_for_export_folds_weight_norm() -> None:
    encoder, x = make(), wave(6480)
    expected = run(encoder, x)
    assert prepare_for_export(encoder) is encoder
    prepare_for_export(encoder)  # idempotent
    keys = set(encoder.state_dict())
    assert POS_CONV + "weight" in keys and not any("parametrizations" in k for k in keys)
    torch.testing.assert_close(run(encoder, x), expected, rtol=0, atol=0)


@pytest.mark.parametrize("suffix", [".safetensors", ".pth"])
def test_state_dict_round_trip(tmp_path: Path, suffix: str) -> None:
    source, target, x = make(0), make(1), wave(6480)
    path = tmp_path / f"hubert{suffix}"
    state = {k: v.contiguous() for k, v in source.state_dict().items()}
    save_file(state, path) if suffix == ".safetensors" else torch.save(state, path)
    assert not torch.equal(run(target, x), run(source, x))
    load_hubert_state_dict(target, path)
    torch.testing.assert_close(run(target, x), run(source, x), rtol=0, atol=0)


def test_load_without_prefix_and_legacy_weight_norm_names(tmp_path: Path) -> None:
    source, x = make(0), wave(6480)
    state = {k.removeprefix("hubert."): v for k, v in source.state_dict().items()}
    conv = "encoder.pos_conv_embed.conv."
    state[conv + "weight_g"] = state.pop(conv + "parametrizations.weight.original0")
    state[conv + "weight_v"] = state.pop(conv + "parametrizations.weight.original1")
    path = tmp_path / "hubert_model.pt"
    torch.save(state, path)

    target = make(1)
    load_hubert_state_dict(target, path)
    torch.testing.assert_close(run(target, x), run(source, x), rtol=0, atol=0)

    folded = prepare_for_export(make(2))
    load_hubert_state_dict(folded, path)
    torch.testing.assert_close(run(folded, x), run(source, x), rtol=1e-6, atol=1e-6)


def test_mismatched_shape_is_refused(tmp_path: Path) -> None:
    state = make().state_dict()
    key = "hubert.encoder.layers.0.attention.k_proj.weight"
    state[key] = torch.zeros(64, 32)
    path = tmp_path / "bad.safetensors"
    save_file(state, path)
    with pytest.raises(ValueError) as err:
        load_hubert_state_dict(make(), path)
    msg = str(err.value)
    assert str(path) in msg and key in msg and "(64, 64)" in msg and "(64, 32)" in msg


def test_missing_and_unexpected_keys_are_refused(tmp_path: Path) -> None:
    state = make().state_dict()
    del state["hubert.encoder.layer_norm.weight"]
    state["lm_head.weight"] = torch.zeros(32, 64)
    path = tmp_path / "ctc.pth"
    torch.save(state, path)
    expected = r"missing keys: encoder\.layer_norm\.weight.*unexpected keys: lm_head\.weight"
    with pytest.raises(ValueError, match=expected):
        load_hubert_state_dict(make(), path)


def test_unsupported_or_absent_file(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="not found"):
        load_hubert_state_dict(make(), tmp_path / "absent.pth")
    other = tmp_path / "weights.npz"
    other.write_bytes(b"")
    with pytest.raises(ValueError, match="unsupported"):
        load_hubert_state_dict(make(), other)


@pytest.fixture(scope="module")
def tiny_onnx(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, HubertEncoder]:
    encoder = prepare_for_export(make())
    path = tmp_path_factory.mktemp("onnx") / SPEC.onnx_file
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # the legacy exporter announces its deprecation
        _export(encoder, path)
    return path, encoder


def _export(encoder: HubertEncoder, path: Path) -> None:
    torch.onnx.export(
        encoder,
        (wave(CFG.window_samples),),
        str(path),
        dynamo=False,
        opset_version=20,
        input_names=SPEC.input_names,
        output_names=SPEC.output_names,
        dynamic_axes={"input_values": {1: "samples"}, "encoding_out": {0: "frames"}},
    )


@pytest.mark.parametrize("samples", [6480, 3240, 9999])
def test_onnx_matches_torch(tiny_onnx: tuple[Path, HubertEncoder], samples: int) -> None:
    path, encoder = tiny_onnx
    x = wave(samples, seed=samples)
    expected = run(encoder, x).numpy()
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (got,) = session.run(None, {"input_values": x.numpy()})
    assert got.shape == expected.shape == (hubert_num_frames(samples), CFG.hidden_size)
    assert np.abs(got - expected).max() / np.abs(expected).max() <= 1e-4
    assert not any(n.op_type in ("ReduceL2", "Div") for n in onnx.load(str(path)).graph.node)  # weight norm folded


def test_check_hubert_onnx_accepts_export(tiny_onnx: tuple[Path, HubertEncoder]) -> None:
    check_hubert_onnx(tiny_onnx[0], CFG)


def _identity_model(
    path: Path, in_name: str, out_name: str, in_shape: list[int | str], out_shape: list[int | str]
) -> Path:
    graph = helper.make_graph(
        [helper.make_node("Identity", [in_name], [out_name])],
        "fake_hubert",
        [helper.make_tensor_value_info(in_name, TensorProto.FLOAT, in_shape)],
        [helper.make_tensor_value_info(out_name, TensorProto.FLOAT, out_shape)],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 20)])
    model.ir_version = 9
    onnx.save(model, str(path))
    return path


@pytest.mark.parametrize(
    ("in_name", "out_name", "in_shape", "out_shape", "problem"),
    [
        ("audio", "encoding_out", [1, "n"], ["t", 64], "no input named 'input_values'"),
        ("input_values", "features", [1, "n"], ["t", 64], "no output named 'encoding_out'"),
        ("input_values", "encoding_out", [1, 1, "n"], [1, 1, "n"], "rank 3"),
        ("input_values", "encoding_out", [1, "n"], [1, "n"], r"gave 'encoding_out' of shape \(1, 6480\)"),
        ("input_values", "encoding_out", ["t", 32], ["t", 32], "last dim 32, expected hidden size 64"),
    ],
)
def test_check_hubert_onnx_rejects(
    tmp_path: Path, in_name: str, out_name: str, in_shape: list, out_shape: list, problem: str
) -> None:
    path = _identity_model(tmp_path / "fake.onnx", in_name, out_name, in_shape, out_shape)
    with pytest.raises(ValueError, match=problem) as err:
        check_hubert_onnx(path, CFG)
    assert str(path) in str(err.value)


def test_check_hubert_onnx_rejects_garbage_file(tmp_path: Path) -> None:
    path = tmp_path / "garbage.onnx"
    path.write_bytes(b"not an onnx model")
    with pytest.raises(ValueError, match="cannot load"):
        check_hubert_onnx(path, CFG)
    with pytest.raises(ValueError, match="not found"):
        check_hubert_onnx(tmp_path / "absent.onnx", CFG)


@pytest.mark.slow
def test_full_window_forward() -> None:
    torch.manual_seed(0)
    out = run(HubertEncoder(FULL.hubert), wave(FULL.hubert.window_samples))
    assert out.shape == (20, 1024) and torch.isfinite(out).all()
