"""Live sessions by correlation id, with the idle timeout that frees abandoned ones."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ditto_triton.protocol import BUSY, BadRequest


class SessionStateError(BadRequest):
    """A request that does not fit the session's state (no START, reused id, data after END)."""


class SessionLimitError(SessionStateError):
    """No room for another session; the client should retry later or on another replica."""


@dataclass
class LiveSession:
    runner: Any  # PipelinedSession
    last_seen: float = field(default_factory=time.monotonic)
    ending: bool = False


class SessionTable:
    def __init__(self, idle_timeout_s: float, max_sessions: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.idle_timeout_s = idle_timeout_s
        self.max_sessions = max_sessions
        self._clock = clock
        self._lock = threading.Lock()
        self._live: dict[int, LiveSession] = {}

    def __len__(self) -> int:
        with self._lock:
            return len(self._live)

    def open(self, corrid: int, runner: Any) -> LiveSession:
        with self._lock:
            if corrid in self._live:
                raise SessionStateError(f"correlation id {corrid} already has a live session; END it or use another id")
            if len(self._live) >= self.max_sessions:
                raise SessionLimitError(
                    f"{BUSY}: the server is at its limit of {self.max_sessions} live sessions; "
                    "retry later or on another replica"
                )
            live = self._live[corrid] = LiveSession(runner, self._clock())
            return live

    def get(self, corrid: int) -> LiveSession:
        with self._lock:
            live = self._live.get(corrid)
            if live is None:
                raise SessionStateError(
                    f"no live session for correlation id {corrid}: the first request of a sequence must set START "
                    "(or the session ended, failed or idled out)"
                )
            if live.ending:
                raise SessionStateError(f"session {corrid} has already received END; no more audio is accepted")
            live.last_seen = self._clock()
            return live

    def ids(self) -> list[int]:
        with self._lock:
            return list(self._live)

    def remove(self, corrid: int) -> LiveSession | None:
        with self._lock:
            return self._live.pop(corrid, None)

    def idle(self) -> list[int]:
        """Ids of sessions with no request for longer than the idle timeout and no work in flight."""
        now = self._clock()
        with self._lock:
            return [
                cid
                for cid, live in self._live.items()
                if now - live.last_seen > self.idle_timeout_s and not getattr(live.runner, "busy", False)
            ]
