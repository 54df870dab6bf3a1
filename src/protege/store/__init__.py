"""Where call records and API keys live. `open_store()` picks the implementation by URL scheme."""

from protege.store import postgres as _postgres  # noqa: F401  (registers PostgreSQL; psycopg loads on open)
from protege.store import sqlite as _sqlite  # noqa: F401  (registers the built-in SQLite store)
from protege.store.base import (
    MODES,
    STORES,
    ApiKey,
    CallFilter,
    Decision,
    Route,
    ShadowResult,
    Store,
    open_store,
    protege_home,
    register_store,
)

__all__ = ["MODES", "STORES", "ApiKey", "CallFilter", "Decision", "Route", "ShadowResult", "Store", "open_store", "protege_home", "register_store"]
