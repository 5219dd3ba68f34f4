"""Ditto's cfg pickles are read by a restricted unpickler: arrays and plain values load, code never runs."""

from __future__ import annotations

import os
import pickle
from collections import OrderedDict

import numpy as np
import pytest

from ditto_triton.ditto_cfg import DittoCfgError, load_ditto_cfg, session_options_from_cfg
from ditto_triton.streaming.options import SessionOptions


def online_cfg() -> dict:
    """Shaped like Ditto's online cfg (architecture reference §2.2), arrays included."""
    return {
        "base_cfg": {"decoder_cfg": {"model_path": "./models/decoder.pth", "device": "cuda"}},
        "audio2motion_cfg": OrderedDict(
            model_path="./models/lmdm_v0.4_hubert.pth", seq_frames=80, audio_feat_dim=1103, use_emo=True
        ),
        "default_kwargs": {
            "overlap_v2": 70,
            "sampling_timesteps": 10,
            "smo_k_d": 3,
            "fix_kp_cond": 1,
            "fix_kp_cond_dim": [0, 202],
            "overall_ctrl_info": {"delta_pitch": 2},
            "emo": np.zeros((600, 8), np.float32),
            "delta_eye_arr": np.arange(15 * 63, dtype=np.float64).reshape(15, 63),
            "v_min_max_for_clip": np.ones((4, 265)),
            "scale": np.float32(1.5),
            "tags": {"a", "b"},
        },
    }


@pytest.mark.parametrize("protocol", [2, 4, 5])
def test_a_cfg_with_arrays_loads(tmp_path, protocol):
    path = tmp_path / "cfg.pkl"
    path.write_bytes(pickle.dumps(online_cfg(), protocol=protocol))
    cfg = load_ditto_cfg(path)
    assert cfg["audio2motion_cfg"]["audio_feat_dim"] == 1103
    np.testing.assert_array_equal(
        cfg["default_kwargs"]["delta_eye_arr"], online_cfg()["default_kwargs"]["delta_eye_arr"]
    )
    assert cfg["default_kwargs"]["emo"].shape == (600, 8)


def test_default_kwargs_become_session_options(tmp_path):
    options, ignored = session_options_from_cfg(online_cfg())
    assert set(options) == {
        "overlap", "sampling_steps", "smooth_k", "fix_kp_cond", "fix_kp_cond_dim", "delta_pitch",
        "emotion_array", "delta_eye_arr", "v_min_max_for_clip",
    }  # fmt: skip
    assert ignored == ["scale", "tags"]
    parsed = SessionOptions.from_dict(options)
    assert (
        parsed.overlap == 70 and parsed.fix_kp_cond_dim == (0, 202) and parsed.overall_ctrl_info == {"delta_pitch": 2}
    )
    assert np.asarray(parsed.emotion_array).shape == (600, 8) and np.asarray(parsed.delta_eye_arr).shape == (15, 63)
    assert np.asarray(parsed.v_min_max_for_clip).shape == (2, 265)  # Ditto reads rows 0 and 1 of its (4, 265)


def test_registration_keys_become_registration_options():
    from ditto_triton.avatar.source import CropOptions
    from ditto_triton.ditto_cfg import registration_options_from_cfg

    cfg = {"default_kwargs": {"crop_scale": 2.0, "crop_flag_do_rot": False, "template_n_frames": -1, "smo_k_s": 9}}
    options = registration_options_from_cfg(cfg)
    assert options == {"crop_scale": 2.0, "crop_rotate": False, "max_frames": 0, "source_smooth_k": 9}
    assert CropOptions.from_dict(options).crop_scale == 2.0


class Exploit:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_a_malicious_pickle_is_refused_without_running(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pkl"
    cfg = online_cfg()
    cfg["default_kwargs"]["payload"] = Exploit(marker)
    path.write_bytes(pickle.dumps(cfg))
    with pytest.raises(DittoCfgError, match=r"refusing to unpickle (posix|os)\.system"):
        load_ditto_cfg(path)
    assert not marker.exists()


def test_other_files_get_a_clear_error(tmp_path):
    (tmp_path / "list.pkl").write_bytes(pickle.dumps([1, 2]))
    with pytest.raises(DittoCfgError, match="not a Ditto cfg"):
        load_ditto_cfg(tmp_path / "list.pkl")
    (tmp_path / "junk.pkl").write_bytes(b"\x80\x05junk")
    with pytest.raises(DittoCfgError, match="not a readable pickle"):
        load_ditto_cfg(tmp_path / "junk.pkl")
    with pytest.raises(DittoCfgError, match="no such file"):
        load_ditto_cfg(tmp_path / "missing.pkl")
