"""Registered avatars by id: content-addressed ids and a bounded least-recently-used cache."""

from __future__ import annotations

import hashlib
import json
import re
import threading
from collections import OrderedDict
from collections.abc import Callable
from typing import Generic, TypeVar

from ditto_triton.avatar.errors import AvatarError

T = TypeVar("T")
_ID = re.compile(r"^[0-9a-f]{32}$")


class UnknownAvatarError(AvatarError):
    """An avatar id that is malformed or not (or no longer) registered."""


def avatar_id(image: bytes, options: dict, profile: str) -> str:
    """Same image + options + profile -> same id, on every replica (no server-side state needed)."""
    digest = hashlib.sha256()
    digest.update(profile.encode())
    digest.update(json.dumps(options, sort_keys=True).encode())
    digest.update(image)
    return digest.hexdigest()[:32]


def check_avatar_id(value: str) -> str:
    if not _ID.match(value):
        raise UnknownAvatarError(f"malformed avatar id {value[:64]!r}: expected 32 lowercase hex characters")
    return value


class AvatarCache(Generic[T]):
    """At most `capacity` avatars and, with `size_of`, at most `max_bytes` of them (a video avatar
    holds one f_s per source frame: 8 MiB each at full size); the least recently used go first,
    but the newest always stays."""

    def __init__(self, capacity: int, max_bytes: int | None = None, size_of: Callable[[T], int] | None = None) -> None:
        if capacity < 1:
            raise ValueError("avatar cache capacity must be >= 1")
        if (max_bytes is None) != (size_of is None):
            raise ValueError("give max_bytes and size_of together")
        self.capacity = capacity
        self.max_bytes = max_bytes
        self._size_of = size_of
        self._items: OrderedDict[str, T] = OrderedDict()
        self._sizes: dict[str, int] = {}
        self._lock = threading.Lock()

    def put(self, key: str, value: T) -> None:
        with self._lock:
            self._items[key] = value
            self._items.move_to_end(key)
            self._sizes[key] = self._size_of(value) if self._size_of else 0
            while len(self._items) > self.capacity or (
                self.max_bytes is not None and len(self._items) > 1 and self.bytes > self.max_bytes
            ):
                old, _ = self._items.popitem(last=False)
                del self._sizes[old]

    @property
    def bytes(self) -> int:
        return sum(self._sizes.values())

    def get(self, key: str) -> T:
        check_avatar_id(key)
        with self._lock:
            if key not in self._items:
                raise UnknownAvatarError(f"unknown avatar id {key!r}: register the image with avatar_registry first")
            self._items.move_to_end(key)
            return self._items[key]

    def __contains__(self, key: str) -> bool:
        with self._lock:
            return key in self._items

    def __len__(self) -> int:
        with self._lock:
            return len(self._items)
