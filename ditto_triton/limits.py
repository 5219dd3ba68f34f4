"""Server limits, declared once: the defaults of `ditto-serve`, the container's settings and the
rendered configs all come from `ServerLimits()`; the backends read the values the configs carry."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ServerLimits:
    max_sessions: int = 16  # live streaming sessions one orchestrator admits; one more is refused as BUSY
    idle_timeout_s: float = 60.0  # a session with no request for this long is closed
    max_request_audio_s: float = 60.0  # audio one orchestrator request may carry
    avatar_cache_size: int = 64  # avatars the registry keeps (least recently used go first)
    avatar_cache_max_mb: int = 4096  # and their bytes
    max_batch_size: int = 8  # per-frame stages and LMDM


DEFAULT_LIMITS = ServerLimits()
