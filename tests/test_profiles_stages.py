import dataclasses

import pytest

from ditto_triton.profiles import FULL, PROFILES, TINY, AppearanceConfig, Profile, get_profile
from ditto_triton.stages import STAGE_ORDER, stage_specs


def test_full_profile_matches_ditto_sizes():
    specs = stage_specs(FULL)
    assert specs["appearance_extractor"].outputs[0].shape == (-1, 32, 16, 64, 64)
    assert specs["warp_network"].outputs[0].shape == (-1, 256, 64, 64)
    assert specs["decoder"].outputs[0].shape == (-1, 3, 512, 512)
    assert specs["lmdm"].inputs[2].shape == (-1, 80, 1103)
    assert specs["hubert"].outputs[0].shape == (-1, 1024)


def test_every_profile_declares_every_stage_with_ditto_names():
    expected = {
        "appearance_extractor": (["image"], ["pred"]),
        "motion_extractor": (["image"], ["pitch", "yaw", "roll", "t", "exp", "scale", "kp"]),
        "warp_network": (["feature_3d", "kp_source", "kp_driving"], ["out"]),
        "decoder": (["feature"], ["output"]),
        "stitch_network": (["kp_source", "kp_driving"], ["out"]),
        "lmdm": (["x", "cond_frame", "cond", "time_cond", "guidance_weight"], ["pred_noise", "x_start"]),
        "hubert": (["input_values"], ["encoding_out"]),
    }
    for profile in PROFILES.values():
        specs = stage_specs(profile)
        assert tuple(specs) == STAGE_ORDER
        for name, (ins, outs) in expected.items():
            assert (specs[name].input_names, specs[name].output_names) == (ins, outs)


def test_tiny_keeps_ranks_and_names_of_full():
    full, tiny = stage_specs(FULL), stage_specs(TINY)
    for name in STAGE_ORDER:
        for a, b in zip(full[name].inputs + full[name].outputs, tiny[name].inputs + tiny[name].outputs):
            assert (a.name, len(a.shape), a.dtype) == (b.name, len(b.shape), b.dtype)


def test_inconsistent_profile_is_refused_with_the_broken_rule():
    with pytest.raises(ValueError, match="warp.reshape_channel"):
        Profile(name="bad", appearance=dataclasses.replace(AppearanceConfig(), reshape_channel=8, max_features=128))


def test_unknown_profile_name():
    with pytest.raises(ValueError, match="unknown profile 'huge'"):
        get_profile("huge")
