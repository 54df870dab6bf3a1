"""The store interface: where call records and API keys live.

SQLite is the default; a PostgreSQL store fills the same interface at scale. Stores register
by URL scheme in `STORES`, the same way a plugin would.
"""

from __future__ import annotations

import os
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from protege.records import CallRecord

ROLES = ("client", "admin")


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
class CallFilter:
    """Which calls a query selects; every field is optional."""

    workload: str | None = None
    since: float | None = None
    until: float | None = None
    source: str | None = None
    model: str | None = None
    task_id: str | None = None


class Store(ABC):
    """Persistent log of calls plus the gateway's API keys."""

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
    def set_task_ids(self, mapping: dict[str, str | None]) -> None: ...

    @abstractmethod
    def add_key(self, key: ApiKey) -> None: ...

    @abstractmethod
    def list_keys(self) -> list[ApiKey]: ...

    @abstractmethod
    def revoke_key(self, name: str) -> bool: ...

    def close(self) -> None:  # noqa: B027 - optional hook
        pass

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


STORES: dict[str, Callable[[str], Store]] = {}
"""Store factories by URL scheme; each takes the full URL or path."""


def register_store(scheme: str, factory: Callable[[str], Store]) -> None:
    STORES[scheme] = factory


def default_store_url() -> str:
    return os.environ.get("PROTEGE_DATABASE_URL") or str(protege_home() / "protege.db")


def open_store(url: str | os.PathLike | None = None) -> Store:
    """Open the store at `url`: a SQLite path (default `$PROTEGE_HOME/protege.db`) or `scheme://...`."""
    url = str(url) if url is not None else default_store_url()
    scheme = url.split("://", 1)[0] if "://" in url else "sqlite"
    if scheme not in STORES:
        known = ", ".join(sorted(STORES))
        raise ValueError(f"Unknown store URL scheme {scheme!r} in {url!r}; known schemes: {known}.")
    return STORES[scheme](url)
