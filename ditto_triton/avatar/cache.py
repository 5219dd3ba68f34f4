"""Registered avatars by id: content-addressed ids and a bounded least-recently-used cache."""

from __future__ import annotations

import hashlib
import json
import re
import threading
from collections import OrderedDict
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
    def __init__(self, capacity: int) -> None:
        if capacity < 1:
            raise ValueError("avatar cache capacity must be >= 1")
        self.capacity = capacity
        self._items: OrderedDict[str, T] = OrderedDict()
        self._lock = threading.Lock()

    def put(self, key: str, value: T) -> None:
        with self._lock:
            self._items[key] = value
            self._items.move_to_end(key)
            while len(self._items) > self.capacity:
                self._items.popitem(last=False)

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
