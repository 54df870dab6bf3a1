"""Gateway API keys with roles: `client` may call completions, `admin` may also read logs.

Keys are random 256-bit tokens shown once at creation; the store keeps only their SHA-256.
Open mode (everyone is admin, meant for local use) is decided when the gateway starts: `--open`, or no
key was ever created. Once a key exists the gateway stays keyed: revoking every key locks everyone out,
it never opens the gateway.
"""

from __future__ import annotations

import hashlib
import ipaddress
import logging
import secrets
import threading
import time
from dataclasses import dataclass

from protege.store.base import ROLES, ApiKey, Store

log = logging.getLogger(__name__)

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


def is_loopback(host: str) -> bool:
    """Whether `host` only accepts connections from this machine."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def open_network_refusal(host: str) -> str:
    return (f"Refusing to serve in OPEN MODE on {host}: anyone on the network could call completions and read "
            "every logged call. Create a key (`protege keys create --name ops --role admin`) and serve keyed, listen "
            "on 127.0.0.1, or pass --allow-open-network if this network is really trusted.")


class KeyRing:
    """The active keys, cached in memory and re-read from the store every `refresh_s` (revocations apply).

    `open_mode=True` (`protege serve --open`) lets everyone in as admin. Without it the gateway is open
    only while no key was ever created (revoked keys count: they stay in the store).

    Used alone (the CLI), a stale cache is re-read on the next check. The gateway calls `start()`, and a thread
    re-reads the keys instead, so a request never waits for the database; when the store cannot be read, the
    keys in force stay (logged once) until it can."""

    def __init__(self, store: Store, refresh_s: float = 2.0, *, open_mode: bool = False):
        self.store = store
        self.refresh_s = refresh_s
        self.open_mode = open_mode
        self._ever_keyed = False
        self._by_hash: dict[str, Caller] = {}
        self._loaded_at = -1e9
        self._stop: threading.Event | None = None
        self._thread: threading.Thread | None = None
        self._last_error: str | None = None
        self.reload()

    def reload(self) -> None:
        keys = self.store.list_keys()
        self._ever_keyed = self._ever_keyed or bool(keys)
        self._by_hash = {k.key_hash: Caller(k.name, k.role) for k in keys if k.is_active}
        self._loaded_at = time.monotonic()

    def start(self) -> None:
        """Re-read the keys in a background thread from now on."""
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="protege-keys", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        if self._stop is not None and self._thread is not None:
            self._stop.set()
            self._thread.join(10)

    def _run(self) -> None:
        assert self._stop is not None
        while not self._stop.wait(self.refresh_s):
            try:
                self.reload()
                self._last_error = None
            except Exception as e:  # noqa: BLE001 - the store is down: the keys in force stay
                if str(e) != self._last_error:
                    log.error("Re-reading the API keys failed (%s); the keys in force stay until it works.", e)
                self._last_error = str(e)

    @property
    def is_open(self) -> bool:
        self._maybe_reload()
        return self.open_mode or not self._ever_keyed

    def _maybe_reload(self) -> None:
        if self._thread is None and time.monotonic() - self._loaded_at > self.refresh_s:
            self.reload()

    def authenticate(self, authorization: str | None) -> Caller | None:
        """The caller for an `Authorization: Bearer pk-...` header; None if the key is unknown or revoked."""
        if self.is_open:
            return OPEN_CALLER
        if not authorization or not authorization.lower().startswith("bearer "):
            return None
        return self._by_hash.get(hash_key(authorization[7:].strip()))
