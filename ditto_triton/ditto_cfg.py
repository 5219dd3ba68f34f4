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

# Ditto's setup() keyword -> this project's session option.
_OPTION_NAMES = {"overlap_v2": "overlap", "sampling_timesteps": "sampling_steps", "smo_k_d": "smooth_k"}
_CTRL_NAMES = ("delta_pitch", "delta_yaw", "delta_roll")


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


def session_options_from_cfg(cfg: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """(session options, ignored default_kwargs names) from a cfg's `default_kwargs`."""
    defaults = cfg.get("default_kwargs") or {}
    options: dict[str, Any] = {}
    ignored = []
    for key, value in defaults.items():
        if key in _OPTION_NAMES:
            options[_OPTION_NAMES[key]] = int(value)
        elif key == "online_mode":
            options["mode"] = "online" if value else "offline"
        elif key == "overall_ctrl_info" and isinstance(value, dict):
            options.update({k: float(v) for k, v in value.items() if k in _CTRL_NAMES})
            ignored += [f"overall_ctrl_info.{k}" for k in value if k not in _CTRL_NAMES]
        else:
            ignored.append(key)
    return options, sorted(ignored)
