"""Read Ditto's cfg pickles (`ditto_cfg/v0.4_hubert_cfg_*.pkl`) without trusting them.

A pickle can run any code while it loads. Ditto's cfg holds only nested dicts, lists, strings,
numbers and numpy arrays (architecture reference §2.2), so `load_ditto_cfg` unpickles with a
`find_class` that admits exactly the globals numpy arrays and plain containers need and refuses
every other one, naming it. `session_options_from_cfg` maps the cfg's `default_kwargs` onto this
project's session options (those with an equivalent; the rest are listed as ignored).
"""

from __future__ import annotations

import io
import pickle
from pathlib import Path
from typing import Any

# (module, name) pairs numpy needs to rebuild arrays and scalars (numpy 1 and 2 spellings), plus
# plain containers (protocol 2 spells builtins `__builtin__`) and the codec it uses for bytes.
ALLOWED_GLOBALS = frozenset(
    {
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy.core.multiarray", "scalar"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "scalar"),
        ("numpy.core.numeric", "_frombuffer"),
        ("numpy._core.numeric", "_frombuffer"),
        ("collections", "OrderedDict"),
        *(
            (module, name)
            for module in ("builtins", "__builtin__")
            for name in ("set", "frozenset", "complex", "bytearray")
        ),
        ("_codecs", "encode"),
    }
)
TOP_LEVEL_KEYS = ("base_cfg", "audio2motion_cfg", "default_kwargs")
MAX_BYTES = 64 * 1024 * 1024

# Ditto's setup() keyword -> this project's session option (the same name where there is none here).
_OPTION_NAMES = {"overlap_v2": "overlap", "sampling_timesteps": "sampling_steps", "smo_k_d": "smooth_k"}
_SAME_NAMES = (
    "fix_kp_cond",
    "fix_kp_cond_dim",
    "v_min_max_for_clip",
    "use_d_keys",
    "relative_d",
    "drive_eye",
    "delta_eye_arr",
    "delta_eye_open_n",
    "fade_type",
    "fade_out_keys",
    "flag_stitching",
    "eye_f0_mode",
)
_CTRL_NAMES = tuple(f"{kind}_{axis}" for kind in ("delta", "alpha") for axis in ("pitch", "yaw", "roll")) + (
    "vad_alpha",
    "delta_exp",
)
# Ditto's setup() keyword -> this project's registration option.
_REGISTRATION_NAMES = {
    "max_size": "max_size",
    "crop_scale": "crop_scale",
    "crop_vy_ratio": "crop_vy_ratio",
    "crop_flag_do_rot": "crop_rotate",
    "smo_k_s": "source_smooth_k",
    "template_n_frames": "max_frames",
}


class DittoCfgError(ValueError):
    """The file is not a Ditto cfg pickle this project can read safely."""


class _RestrictedUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in ALLOWED_GLOBALS:
            raise DittoCfgError(
                f"refusing to unpickle {module}.{name}: a Ditto cfg holds only numpy arrays and plain values"
            )
        return super().find_class(module, name)


def load_ditto_cfg(path: Path) -> dict[str, Any]:
    """The cfg dict of a Ditto cfg pickle, read with the restricted unpickler."""
    path = Path(path)
    if not path.is_file():
        raise DittoCfgError(f"{path}: no such file")
    data = path.read_bytes()
    if len(data) > MAX_BYTES:
        raise DittoCfgError(f"{path}: {len(data)} bytes; a Ditto cfg is far smaller (limit {MAX_BYTES})")
    try:
        cfg = _RestrictedUnpickler(io.BytesIO(data)).load()
    except DittoCfgError as exc:
        raise DittoCfgError(f"{path}: {exc}") from None
    except Exception as exc:  # noqa: BLE001 - a damaged pickle raises many types
        raise DittoCfgError(f"{path}: not a readable pickle: {exc}") from None
    if not isinstance(cfg, dict) or not all(k in cfg for k in TOP_LEVEL_KEYS):
        found = sorted(cfg) if isinstance(cfg, dict) else type(cfg).__name__
        raise DittoCfgError(f"{path}: not a Ditto cfg (expected keys {list(TOP_LEVEL_KEYS)}, found {found})")
    return cfg


def _plain(value: Any) -> Any:
    """Arrays, numpy scalars and tuples as the JSON values session options take."""
    if hasattr(value, "tolist"):
        return value.tolist()
    if isinstance(value, tuple):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


def _emotion_option(value: Any) -> dict[str, Any]:
    value = _plain(value)
    rows = isinstance(value, list) and value and isinstance(value[0], list)
    if rows and all(len(r) == 8 for r in value) and any(isinstance(x, float) for r in value for x in r):
        return {"emotion_array": value}  # Ditto's (m, 8) emo array
    return {"emotion": value}


def session_options_from_cfg(cfg: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """(session options, ignored default_kwargs names) from a cfg's `default_kwargs`: every key of
    Ditto's setup() with a session-level meaning here; the registration keys are
    `registration_options_from_cfg`'s, and `ctrl_info`, `N_d`, `ch_info` (per call in Ditto) are listed."""
    defaults = cfg.get("default_kwargs") or {}
    options: dict[str, Any] = {}
    ignored = []
    for key, value in defaults.items():
        if key in _OPTION_NAMES:
            options[_OPTION_NAMES[key]] = int(value)
        elif key in _SAME_NAMES:
            options[key] = _plain(value)
        elif key == "online_mode":
            options["mode"] = "online" if value else "offline"
        elif key == "emo":
            options.update(_emotion_option(value))
        elif key == "overall_ctrl_info" and isinstance(value, dict):
            options.update({k: _plain(v) for k, v in value.items() if k in _CTRL_NAMES})
            ignored += [f"overall_ctrl_info.{k}" for k in value if k not in _CTRL_NAMES]
        elif key not in _REGISTRATION_NAMES:
            ignored.append(key)
    return options, sorted(ignored)


def registration_options_from_cfg(cfg: dict[str, Any]) -> dict[str, Any]:
    """Registration options from a cfg's `default_kwargs` (crop, size cap, video smoothing, frames)."""
    defaults = cfg.get("default_kwargs") or {}
    options = {_REGISTRATION_NAMES[k]: _plain(v) for k, v in defaults.items() if k in _REGISTRATION_NAMES}
    if "max_frames" in options:
        options["max_frames"] = max(int(options["max_frames"]), 0)  # Ditto's -1 (all) is our 0
    return options
