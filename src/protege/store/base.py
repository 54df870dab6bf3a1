"""The store interface: where call records and API keys live.

SQLite is the default; a PostgreSQL store fills the same interface at scale. Stores register
by URL scheme in `STORES`, the same way a plugin would.
"""

from __future__ import annotations

import os
import re
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from protege.records import CallRecord

if TYPE_CHECKING:
    from protege.store.crypto import DataCipher

ROLES = ("client", "admin")
MODES = ("off", "shadow", "canary", "on")
"""How a task's specialist takes part in serving: not at all, beside the LLM (compared, never
served), on a share of the traffic, or on all of it (the LLM stays the fallback)."""


_URL_CREDENTIALS = re.compile(r"(?<=://)[^/@\s]+@")


def redact_credentials(text: str) -> str:
    """`text` with the `user:secret@` part of every URL in it replaced by `***@`, for messages and logs."""
    return _URL_CREDENTIALS.sub("***@", text)


def protege_home() -> Path:
    """protege's home directory: `$PROTEGE_HOME`, else `~/.protege`."""
    return Path(os.environ.get("PROTEGE_HOME") or Path.home() / ".protege")


@dataclass
class ApiKey:
    """A gateway API key as stored: only its hash is kept."""

    name: str
    role: str
    key_hash: str
    created_ts: float
    revoked_ts: float | None = None

    @property
    def is_active(self) -> bool:
        return self.revoked_ts is None


@dataclass
class Route:
    """How the gateway routes one task: its specialist, the mode and the fallback threshold."""

    task_id: str
    mode: str = "off"
    specialist: str | None = None
    """The specialist's folder."""
    canary_share: float = 0.1
    """In `canary` mode, the share of the task's calls the specialist answers."""
    min_confidence: float | None = None
    """Fall back to the LLM when the specialist's confidence is below this (None: never for confidence)."""
    updated_ts: float = 0.0


@dataclass
class Decision:
    """One promotion, demotion or manual mode change, with the evidence it rested on."""

    task_id: str
    action: str
    """"promote", "hold", "demote", "set", or "retrain" (`protege forget` deleted calls its specialists may have
    learnt from; the mode is unchanged and the flywheel retrains the task)."""
    mode_from: str | None
    mode_to: str
    reason: str
    evidence: dict = field(default_factory=dict)
    specialist: str | None = None
    actor: str = "gate"
    """"gate" (automatic), "monitor" (live demotion) or "user"."""
    ts: float = 0.0
    id: int | None = None


@dataclass
class ShadowResult:
    """A specialist's answer to a call the LLM served, compared with the LLM's (shadow mode).

    Kept apart from the calls: a specialist's output must never become training data."""

    call_id: str
    task_id: str
    agree: bool
    score: float
    """The task's headline metric of the specialist's answer against the LLM's."""
    valid: bool
    confidence: float | None = None
    latency_ms: float | None = None
    specialist: str | None = None
    answer: dict | None = None
    ts: float = 0.0


@dataclass
class CallFilter:
    """Which calls a query selects; every field is optional."""

    workload: str | None = None
    since: float | None = None
    until: float | None = None
    source: str | None = None
    model: str | None = None
    task_id: str | None = None


class Store(ABC):
    """Persistent log of calls plus the gateway's API keys.

    `cipher` (see store/crypto.py) seals the fields that can hold prompt text; a backend passes every
    such field through `crypto.seal_text` / `open_text` in its row mapping, records the key ids it sealed
    with, and refuses to open (`crypto.check_keys`) when those keys are not all at hand."""

    cipher: DataCipher | None = None

    @abstractmethod
    def add_calls(self, records: Iterable[CallRecord]) -> int:
        """Insert records, ignoring ids already stored; returns how many were new."""

    @abstractmethod
    def get_call(self, call_id: str) -> CallRecord | None: ...

    @abstractmethod
    def iter_calls(
        self, flt: CallFilter | None = None, *, limit: int | None = None, newest_first: bool = False
    ) -> Iterator[CallRecord]: ...

    @abstractmethod
    def stats(self, flt: CallFilter | None = None) -> dict:
        """Totals and per-workload / per-model / per-task breakdowns (see docs/cli.md for the shape)."""

    @abstractmethod
    def delete_calls(self, ids: Iterable[str]) -> int:
        """Delete these calls and their shadow results, leaving no copy in the database's files where the backend
        can help it; returns how many calls were deleted."""

    @abstractmethod
    def delete_calls_before(self, ts: float) -> int:
        """Delete every call (and its shadow result) that started before `ts` (retention); returns how many."""

    @abstractmethod
    def reseal_calls(self, batch: int = 500) -> dict:
        """Re-seal every sealed or plaintext field with the current key (`protege keys rotate-data`), then forget the
        old key ids unless a writer still sealed rows with one meanwhile; returns {"calls": n, "shadow_results": n,
        "key_id": current, "retired": [old ids], "not_resealed": rows still under another key (run it again)}."""

    @abstractmethod
    def set_task_ids(self, mapping: dict[str, str | None]) -> None: ...

    @abstractmethod
    def add_key(self, key: ApiKey) -> None: ...

    @abstractmethod
    def list_keys(self) -> list[ApiKey]: ...

    @abstractmethod
    def revoke_key(self, name: str) -> bool: ...

    @abstractmethod
    def set_route(self, route: Route, decision: Decision | None = None) -> None:
        """Create or replace a task's route, recording `decision` in the same transaction."""

    @abstractmethod
    def add_decision(self, decision: Decision) -> None:
        """Record a decision that changes no route (a gate holding a specialist back)."""

    @abstractmethod
    def routes(self) -> dict[str, Route]: ...

    @abstractmethod
    def routes_version(self) -> float:
        """Changes whenever a route changes: the gateway polls it to pick up promotions without a restart."""

    @abstractmethod
    def decisions(self, task_id: str | None = None, limit: int | None = None) -> list[Decision]:
        """Decisions, newest first."""

    @abstractmethod
    def add_shadow_result(self, result: ShadowResult) -> None: ...

    @abstractmethod
    def shadow_results(self, task_id: str | None = None, since: float | None = None) -> list[ShadowResult]:
        """Shadow comparisons, oldest first."""

    def close(self) -> None:  # noqa: B027 - optional hook
        pass

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


STORES: dict[str, Callable[..., Store]] = {}
"""Store factories by URL scheme; each takes the full URL or path, and `cipher=` (a DataCipher or None)."""
FROM_ENVIRONMENT = "environment"


def register_store(scheme: str, factory: Callable[..., Store]) -> None:
    STORES[scheme] = factory


def default_store_url() -> str:
    return os.environ.get("PROTEGE_DATABASE_URL") or str(protege_home() / "protege.db")


def open_store(url: str | os.PathLike | None = None, cipher: DataCipher | None | str = FROM_ENVIRONMENT,
               key_file: str | os.PathLike | None = None) -> Store:
    """Open the store at `url`: a SQLite path (default `$PROTEGE_HOME/protege.db`) or `scheme://...`.

    `cipher`: the data cipher; by default read from the environment, `key_file` or `$PROTEGE_HOME/data.key`
    (store/crypto.py), so encryption is on wherever its key is."""
    url = str(url) if url is not None else default_store_url()
    scheme = url.split("://", 1)[0] if "://" in url else "sqlite"
    if scheme not in STORES:
        known = ", ".join(sorted(STORES))
        raise ValueError(f"Unknown store URL scheme {scheme!r} in {url!r}; known schemes: {known}.")
    if isinstance(cipher, str):
        from protege.store.crypto import load_cipher

        cipher = load_cipher(key_file)
    return STORES[scheme](url, cipher=cipher)
