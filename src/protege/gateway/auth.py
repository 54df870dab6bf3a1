"""Gateway API keys with roles: `client` may call completions, `admin` may also read logs.

Keys are random 256-bit tokens shown once at creation; the store keeps only their SHA-256.
With no key in the store the gateway runs in open mode (everyone is admin), meant for local use.
"""

from __future__ import annotations

import hashlib
import secrets
import time
from dataclasses import dataclass

from protege.store.base import ROLES, ApiKey, Store

KEY_PREFIX = "pk-"


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def create_key(store: Store, name: str, role: str = "client") -> str:
    """Store a new key and return its plaintext (the only time it is visible)."""
    if role not in ROLES:
        raise ValueError(f"Unknown role {role!r}; use --role client or --role admin.")
    key = KEY_PREFIX + secrets.token_urlsafe(32)
    store.add_key(ApiKey(name=name, role=role, key_hash=hash_key(key), created_ts=time.time()))
    return key


@dataclass(frozen=True)
class Caller:
    name: str | None
    role: str

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"


OPEN_CALLER = Caller(None, "admin")


class KeyRing:
    """The active keys, cached in memory and re-read from the store every few seconds (revocations apply)."""

    def __init__(self, store: Store, refresh_s: float = 2.0):
        self.store = store
        self.refresh_s = refresh_s
        self._by_hash: dict[str, Caller] = {}
        self._loaded_at = -1e9
        self.reload()

    def reload(self) -> None:
        self._by_hash = {k.key_hash: Caller(k.name, k.role) for k in self.store.list_keys() if k.is_active}
        self._loaded_at = time.monotonic()

    @property
    def is_open(self) -> bool:
        self._maybe_reload()
        return not self._by_hash

    def _maybe_reload(self) -> None:
        if time.monotonic() - self._loaded_at > self.refresh_s:
            self.reload()

    def authenticate(self, authorization: str | None) -> Caller | None:
        """The caller for an `Authorization: Bearer pk-...` header; None if the key is unknown or revoked."""
        self._maybe_reload()
        if not self._by_hash:
            return OPEN_CALLER
        if not authorization or not authorization.lower().startswith("bearer "):
            return None
        return self._by_hash.get(hash_key(authorization[7:].strip()))
