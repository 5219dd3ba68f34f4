"""Synthetic checkpoints in Ditto's released layout: round trip, strictness, clear refusals."""

import pickle

import pytest
import torch

from ditto_triton.export.checkpoints import CheckpointError, load_checkpoint, read_state_dict, write_checkpoint
from ditto_triton.export.registry import STAGE_NETWORKS
from ditto_triton.export.synthetic import synthesize_
from ditto_triton.profiles import FULL, TINY
from ditto_triton.stages import stage_specs

RELEASED = [name for name, spec in stage_specs(TINY).items() if spec.checkpoint_file]


def synthetic_state_module(name, seed=0, profile=TINY):
    net = STAGE_NETWORKS[name]
    module = net.build(profile)
    synthesize_(net.state_module(module), seed)
    return net, net.state_module(module)


@pytest.mark.parametrize("name", RELEASED)
def test_round_trip_is_exact(tmp_path, name):
    net, module = synthetic_state_module(name)
    path = tmp_path / stage_specs(TINY)[name].checkpoint_file
    write_checkpoint(module, path, net.nesting)
    _, fresh = synthetic_state_module(name, seed=1)
    load_checkpoint(fresh, path, net.nesting)
    want, got = module.state_dict(), fresh.state_dict()
    assert want.keys() == got.keys()
    for key in want:
        assert torch.equal(want[key], got[key]), key


def test_released_nesting_is_written():
    for name, key in (("stitch_network", "retarget_shoulder"), ("lmdm", "model_state_dict")):
        assert STAGE_NETWORKS[name].nesting == key


def test_file_layout_matches_release(tmp_path):
    net, module = synthetic_state_module("lmdm")
    write_checkpoint(module, tmp_path / "lmdm.pth", net.nesting)
    raw = torch.load(tmp_path / "lmdm.pth", weights_only=True)
    assert list(raw) == ["model_state_dict"]
    assert "seqTransDecoder.stack.0.rotary.freqs" in raw["model_state_dict"]
    assert "input_projection.weight" in raw["model_state_dict"]  # MotionDecoder keys, no "model." prefix
    _, decoder = synthetic_state_module("decoder")
    keys = decoder.state_dict().keys()
    assert {"G_middle_0.conv_0.weight_orig", "G_middle_0.conv_0.weight_u", "G_middle_0.conv_0.weight_v"} <= keys
    assert "up_0.conv_s.bias" not in keys


def test_ddp_module_prefix_is_accepted(tmp_path):
    _, module = synthetic_state_module("stitch_network")
    state = {f"module.{k}": v for k, v in module.state_dict().items()}
    torch.save({"retarget_shoulder": state, "retarget_eye": {}}, tmp_path / "s.pth")
    _, fresh = synthetic_state_module("stitch_network", seed=3)
    load_checkpoint(fresh, tmp_path / "s.pth", "retarget_shoulder")
    assert torch.equal(fresh.state_dict()["mlp.0.weight"], module.state_dict()["mlp.0.weight"])


def test_wrong_shape_names_file_key_and_shapes(tmp_path):
    net, module = synthetic_state_module("stitch_network")
    state = module.state_dict()
    state["mlp.2.weight"] = torch.zeros(3, 3)
    path = tmp_path / "stitch_network.pth"
    torch.save({"retarget_shoulder": state}, path)
    with pytest.raises(CheckpointError) as err:
        load_checkpoint(module, path, net.nesting)
    msg = str(err.value)
    assert str(path) in msg and "'mlp.2.weight'" in msg and "(3, 3)" in msg
    assert str(tuple(module.state_dict()["mlp.2.weight"].shape)) in msg


def test_wrong_key_is_refused(tmp_path):
    _, module = synthetic_state_module("appearance_extractor")
    state = module.state_dict()
    state["second.weight_typo"] = state.pop("second.weight")
    torch.save(state, tmp_path / "a.pth")
    with pytest.raises(CheckpointError, match=r"missing keys .*second\.weight.*unexpected keys .*second\.weight_typo"):
        load_checkpoint(module, tmp_path / "a.pth")


def test_missing_nesting_is_refused(tmp_path):
    net, module = synthetic_state_module("lmdm")
    torch.save(module.state_dict(), tmp_path / "lmdm.pth")
    with pytest.raises(CheckpointError, match="under key 'model_state_dict'"):
        load_checkpoint(module, tmp_path / "lmdm.pth", net.nesting)


def test_full_checkpoint_into_tiny_network_is_refused(tmp_path):
    net = STAGE_NETWORKS["stitch_network"]
    write_checkpoint(net.build(FULL), tmp_path / "full.pth", net.nesting)
    with pytest.raises(CheckpointError, match="another profile"):
        load_checkpoint(net.build(TINY), tmp_path / "full.pth", net.nesting)


class Payload:
    def __reduce__(self):
        return (print, ("pwned",))


def test_arbitrary_pickles_are_never_executed(tmp_path, capsys):
    path = tmp_path / "evil.pth"
    with open(path, "wb") as fh:
        pickle.dump({"w": Payload()}, fh)
    with pytest.raises(CheckpointError, match="not a loadable weights-only checkpoint"):
        read_state_dict(path)
    assert "pwned" not in capsys.readouterr().out


def test_missing_file_is_named(tmp_path):
    with pytest.raises(CheckpointError, match="checkpoint file not found"):
        read_state_dict(tmp_path / "nope.pth")
