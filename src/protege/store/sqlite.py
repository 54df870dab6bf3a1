"""SQLite store (the default): one file in WAL mode, schema evolved by recorded migrations."""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

import orjson

from protege.records import CallRecord
from protege.store.base import MODES, ApiKey, CallFilter, Decision, Route, ShadowResult, Store, register_store
from protege.store.crypto import PREFIX, DataCipher, DataKeyError, check_keys, missing_key_message, open_text, seal_text

log = logging.getLogger(__name__)

# Each migration runs once, in order, inside a transaction, and is recorded in `_migrations`.
MIGRATIONS: list[tuple[str, Callable[[sqlite3.Connection], None]]] = []


def migration(fn: Callable[[sqlite3.Connection], None]) -> Callable[[sqlite3.Connection], None]:
    MIGRATIONS.append((fn.__name__, fn))
    return fn


@migration
def m001_calls(db: sqlite3.Connection) -> None:
    db.execute(
        """CREATE TABLE calls (
            id TEXT PRIMARY KEY,
            ts REAL NOT NULL,
            source TEXT NOT NULL,
            workload TEXT,
            client TEXT,
            requested_model TEXT,
            upstream_model TEXT,
            served_by TEXT,
            stream INTEGER NOT NULL DEFAULT 0,
            has_tools INTEGER NOT NULL DEFAULT 0,
            prompt_tokens INTEGER,
            completion_tokens INTEGER,
            cost_usd REAL,
            latency_ms REAL,
            ttft_ms REAL,
            status INTEGER NOT NULL,
            error TEXT,
            request_json TEXT NOT NULL,
            response_json TEXT,
            metadata_json TEXT NOT NULL DEFAULT '{}'
        )"""
    )
    db.execute("CREATE INDEX calls_ts ON calls(ts)")
    db.execute("CREATE INDEX calls_workload_ts ON calls(workload, ts)")


@migration
def m002_api_keys(db: sqlite3.Connection) -> None:
    db.execute(
        """CREATE TABLE api_keys (
            name TEXT PRIMARY KEY,
            role TEXT NOT NULL CHECK (role IN ('client', 'admin')),
            key_hash TEXT NOT NULL UNIQUE,
            created_ts REAL NOT NULL,
            revoked_ts REAL
        )"""
    )


@migration
def m003_task_id(db: sqlite3.Connection) -> None:
    db.execute("ALTER TABLE calls ADD COLUMN task_id TEXT")
    db.execute("CREATE INDEX calls_task ON calls(task_id)")


@migration
def m004_routes(db: sqlite3.Connection) -> None:
    db.execute(
        """CREATE TABLE routes (
            task_id TEXT PRIMARY KEY,
            mode TEXT NOT NULL CHECK (mode IN ('off', 'shadow', 'canary', 'on')),
            specialist TEXT,
            canary_share REAL NOT NULL,
            min_confidence REAL,
            updated_ts REAL NOT NULL
        )"""
    )
    db.execute(
        """CREATE TABLE decisions (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            ts REAL NOT NULL,
            task_id TEXT NOT NULL,
            action TEXT NOT NULL,
            mode_from TEXT,
            mode_to TEXT NOT NULL,
            specialist TEXT,
            reason TEXT NOT NULL,
            evidence_json TEXT NOT NULL,
            actor TEXT NOT NULL
        )"""
    )
    db.execute("CREATE INDEX decisions_task ON decisions(task_id, ts)")
    db.execute(
        """CREATE TABLE shadow_results (
            call_id TEXT PRIMARY KEY,
            ts REAL NOT NULL,
            task_id TEXT NOT NULL,
            specialist TEXT,
            agree INTEGER NOT NULL,
            score REAL NOT NULL,
            valid INTEGER NOT NULL,
            confidence REAL,
            latency_ms REAL,
            answer_json TEXT
        )"""
    )
    db.execute("CREATE INDEX shadow_task_ts ON shadow_results(task_id, ts)")


@migration
def m005_data_keys(db: sqlite3.Connection) -> None:
    # The ids (never the keys) of the data keys that sealed rows: a store opened without them refuses to start
    # rather than write new calls in plaintext next to sealed ones.
    db.execute("CREATE TABLE data_keys (key_id TEXT PRIMARY KEY, first_used_ts REAL NOT NULL)")


OPEN_RETRY_S = 30.0


def _open(path: str) -> tuple[sqlite3.Connection, list[str]]:
    """A configured connection and the migrations it applied. Several processes opening a new file together can
    get "database is locked" at once, without SQLite's busy wait (switching it to WAL, or a lock upgrade SQLite
    refuses to avoid a deadlock): such an open is retried from the start for up to `OPEN_RETRY_S`."""
    deadline, applied = time.monotonic() + OPEN_RETRY_S, []
    while True:
        db = sqlite3.connect(path, check_same_thread=False, timeout=30, isolation_level=None)
        try:
            db.row_factory = sqlite3.Row
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")
            db.execute("PRAGMA busy_timeout=30000")
            db.execute("PRAGMA secure_delete=ON")  # deleted and re-sealed rows are overwritten, not left in free pages
            db.isolation_level = ""  # back to implicit transactions for `with self.db:`
            apply_migrations(db, applied=applied)  # what an attempt that then failed applied is counted too
            return db, applied
        except sqlite3.OperationalError as e:
            db.close()
            if "locked" not in str(e) or time.monotonic() > deadline:
                raise
            time.sleep(0.05)
        except BaseException:
            db.close()
            raise


def apply_migrations(db: sqlite3.Connection, upto: str | None = None, applied: list[str] | None = None) -> list[str]:
    """Run the migrations not yet recorded (stopping after `upto` if given); returns those run (appended to
    `applied` if given, as each commits). Each runs in a write transaction that re-checks it is still due, so
    processes opening a new file together apply it once."""
    db.execute("CREATE TABLE IF NOT EXISTS _migrations (name TEXT PRIMARY KEY, applied_ts REAL NOT NULL)")
    done = {row[0] for row in db.execute("SELECT name FROM _migrations")}
    applied = [] if applied is None else applied
    for name, fn in MIGRATIONS:
        if name not in done:
            db.execute("BEGIN IMMEDIATE")  # the write lock first: a concurrent opener waits here
            try:
                due = db.execute("SELECT 1 FROM _migrations WHERE name = ?", (name,)).fetchone() is None
                if due:
                    fn(db)
                    db.execute("INSERT INTO _migrations VALUES (?, ?)", (name, time.time()))
                db.execute("COMMIT")
                if due:
                    applied.append(name)
            except BaseException:
                db.execute("ROLLBACK")
                raise
        if name == upto:
            break
    return applied


COLUMNS = (
    "id ts source workload client requested_model upstream_model served_by stream has_tools "
    "prompt_tokens completion_tokens cost_usd latency_ms ttft_ms status error "
    "request_json response_json metadata_json task_id"
).split()
CALL_SEALED = {"error": "error", "request": "request_json", "response": "response_json", "metadata": "metadata_json"}
"""Sealed fields of `calls` → their columns (the names are the associated data, shared with the spool)."""
SHADOW_SEALED = {"shadow_answer": "answer_json"}
_INSERT = f"INSERT OR IGNORE INTO calls ({', '.join(COLUMNS)}) VALUES ({', '.join('?' * len(COLUMNS))})"


def _row(r: CallRecord, cipher: DataCipher | None) -> tuple:
    def seal(text: str | None, name: str) -> str | None:
        return seal_text(cipher, text, r.id, name)

    return (
        r.id, r.ts, r.source, r.workload, r.client, r.requested_model, r.upstream_model, r.served_by,
        int(r.stream), int(r.has_tools), r.prompt_tokens, r.completion_tokens, r.cost_usd,
        r.latency_ms, r.ttft_ms, r.status, seal(r.error, "error"), seal(orjson.dumps(r.request).decode(), "request"),
        seal(None if r.response is None else orjson.dumps(r.response).decode(), "response"),
        seal(orjson.dumps(r.metadata).decode(), "metadata"), r.task_id,
    )  # fmt: skip


def _record(row: sqlite3.Row, cipher: DataCipher | None) -> CallRecord:
    d = dict(row)
    cid = d["id"]
    d["request"] = orjson.loads(open_text(cipher, d.pop("request_json"), cid, "request"))
    resp = open_text(cipher, d.pop("response_json"), cid, "response")
    d["response"] = None if resp is None else orjson.loads(resp)
    d["metadata"] = orjson.loads(open_text(cipher, d.pop("metadata_json"), cid, "metadata"))
    d["error"] = open_text(cipher, d["error"], cid, "error")
    d["stream"], d["has_tools"] = bool(d["stream"]), bool(d["has_tools"])
    return CallRecord.from_dict(d)


def _where(flt: CallFilter | None, placeholder: str = "?") -> tuple[str, list]:
    """The WHERE clause selecting `flt` and its arguments (`placeholder` is the driver's: `?` or `%s`)."""
    if flt is None:
        return "", []
    clauses, args = [], []
    for column, op, value in (
        ("workload", "=", flt.workload),
        ("ts", ">=", flt.since),
        ("ts", "<", flt.until),
        ("source", "=", flt.source),
        ("requested_model", "=", flt.model),
        ("task_id", "=", flt.task_id),
    ):
        if value is not None:
            clauses.append(f"{column} {op} {placeholder}")
            args.append(value)
    return (" WHERE " + " AND ".join(clauses)) if clauses else "", args


class SQLiteStore(Store):
    """A SQLite file in WAL mode, safe to share between threads and processes."""

    def __init__(self, path: str | Path, cipher: DataCipher | None = None):
        path = str(path).removeprefix("sqlite://")
        self.cipher = cipher
        self.path = Path(path)
        try:
            if str(path) != ":memory:":
                self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise RuntimeError(f"Cannot create the folder of the protege database {self.path}: {e.strerror or e}. "
                               "Set PROTEGE_HOME to a writable folder, or pass --database FILE.") from e
        try:
            self.db, self.migrations_applied = _open(str(path))
            self._check_data_keys()
        except sqlite3.DatabaseError as e:
            raise RuntimeError(
                f"Cannot open the protege database at {self.path}: {e}. If the file is corrupt, move it "
                f"aside (mv {self.path} {self.path}.bad) and re-import your logs with `protege import`."
            ) from e
        except DataKeyError:
            self.db.close()
            raise
        self.db.create_function("protege_task_label", 2, self._task_label, deterministic=True)
        self._lock = threading.Lock()

    def _check_data_keys(self) -> None:
        required = {row[0] for row in self.db.execute("SELECT key_id FROM data_keys")}
        check_keys(required, self.cipher)
        if self.cipher is not None and self.cipher.key_id not in required:
            if not required and self.db.execute("SELECT 1 FROM calls LIMIT 1").fetchone():
                log.warning("Encryption at rest is now on for %s; the calls logged before stay in plaintext until "
                            "`protege keys rotate-data` seals them.", self.path)
            with self.db:
                self.db.execute("INSERT OR IGNORE INTO data_keys VALUES (?, ?)", (self.cipher.key_id, time.time()))

    def _task_label(self, call_id: str, metadata_json: str) -> str | None:
        """The caller's `metadata.task` label, for stats (SQL cannot read inside a sealed value)."""
        label = orjson.loads(open_text(self.cipher, metadata_json, call_id, "metadata")).get("task")
        return label if label is None or isinstance(label, (str, int, float)) else str(label)

    def add_calls(self, records: Iterable[CallRecord]) -> int:
        rows = [_row(r, self.cipher) for r in records]
        with self._lock, self.db:
            before = self.db.total_changes
            self.db.executemany(_INSERT, rows)
            return self.db.total_changes - before

    def get_call(self, call_id: str) -> CallRecord | None:
        with self._lock:
            row = self.db.execute("SELECT * FROM calls WHERE id = ?", (call_id,)).fetchone()
        return None if row is None else _record(row, self.cipher)

    def iter_calls(
        self, flt: CallFilter | None = None, *, limit: int | None = None, newest_first: bool = False
    ) -> Iterator[CallRecord]:
        where, args = _where(flt)
        sql = f"SELECT * FROM calls{where} ORDER BY ts {'DESC' if newest_first else 'ASC'}, id"
        if limit is not None:
            sql += f" LIMIT {int(limit)}"
        # A separate read connection, so a long iteration never blocks writers in this process.
        reader = sqlite3.connect(str(self.path), timeout=30) if str(self.path) != ":memory:" else self.db
        reader.row_factory = sqlite3.Row
        try:
            for row in reader.execute(sql, args):
                yield _record(row, self.cipher)
        finally:
            if reader is not self.db:
                reader.close()

    def stats(self, flt: CallFilter | None = None) -> dict:
        where, args = _where(flt)
        agg = (
            "COUNT(*) AS calls, SUM(status != 200 OR error IS NOT NULL) AS errors, "
            "COALESCE(SUM(prompt_tokens), 0) AS prompt_tokens, "
            "COALESCE(SUM(completion_tokens), 0) AS completion_tokens, "
            "COALESCE(SUM(cost_usd), 0.0) AS cost_usd, SUM(cost_usd IS NULL) AS calls_unknown_cost, "
            "AVG(latency_ms) AS mean_latency_ms"
        )
        groups = {
            "by_workload": "workload",
            "by_model": "requested_model",
            # inside a sealed value only Python can read it; plaintext stays in SQL
            "by_task_label": ("protege_task_label(id, metadata_json)" if self.cipher is not None
                              else "json_extract(metadata_json, '$.task')"),
            "by_task": "task_id",
            "by_served_by": "served_by",
        }
        with self._lock:
            total = dict(self.db.execute(f"SELECT {agg} FROM calls{where}", args).fetchone())
            out = {"total": _clean(total)}
            for key, expr in groups.items():
                rows = self.db.execute(
                    f"SELECT {expr} AS name, {agg} FROM calls{where} GROUP BY 1 ORDER BY calls DESC, 1", args
                ).fetchall()
                out[key] = [_clean(dict(r)) for r in rows]
        return out

    def delete_calls(self, ids: Iterable[str]) -> int:
        ids = [(i,) for i in ids]
        with self._lock, self.db:
            before = self.db.total_changes
            self.db.executemany("DELETE FROM calls WHERE id = ?", ids)
            deleted = self.db.total_changes - before
            self.db.executemany("DELETE FROM shadow_results WHERE call_id = ?", ids)
        self._checkpoint()
        return deleted

    def delete_calls_before(self, ts: float) -> int:
        with self._lock, self.db:
            self.db.execute("DELETE FROM shadow_results WHERE call_id IN (SELECT id FROM calls WHERE ts < ?)", (ts,))
            deleted = self.db.execute("DELETE FROM calls WHERE ts < ?", (ts,)).rowcount
        if deleted:
            self._checkpoint()
        return deleted

    def _checkpoint(self) -> None:
        """Copy the WAL into the database file and empty it, so deleted rows survive in neither (a reader that
        holds an old snapshot can delay this until the next checkpoint)."""
        with self._lock:
            self.db.execute("PRAGMA wal_checkpoint(TRUNCATE)")

    def reseal_calls(self, batch: int = 500) -> dict:
        if self.cipher is None:
            raise DataKeyError(missing_key_message())
        counts = {}
        for table, key, columns in (("calls", "id", CALL_SEALED), ("shadow_results", "call_id", SHADOW_SEALED)):
            done, last = 0, ""
            while True:
                with self._lock:
                    rows = self.db.execute(f"SELECT {key}, {', '.join(columns.values())} FROM {table} WHERE {key} > ? "
                                           f"ORDER BY {key} LIMIT ?", (last, batch)).fetchall()
                if not rows:
                    break
                updates = [tuple(seal_text(self.cipher, open_text(self.cipher, row[i + 1], row[0], name), row[0], name)
                                 for i, name in enumerate(columns)) + (row[0],) for row in rows]
                sets = ", ".join(f"{column} = ?" for column in columns.values())
                with self._lock, self.db:
                    self.db.executemany(f"UPDATE {table} SET {sets} WHERE {key} = ?", updates)
                done, last = done + len(rows), rows[-1][0]
            counts[table] = done
        prefix = f"{PREFIX}{self.cipher.key_id}:%"
        with self._lock, self.db:
            stale = self.db.execute("SELECT (SELECT COUNT(*) FROM calls WHERE request_json NOT LIKE ?) + (SELECT COUNT(*) "
                                    "FROM shadow_results WHERE answer_json NOT LIKE ?)", (prefix, prefix)).fetchone()[0]
            retired = [] if stale else [r[0] for r in self.db.execute(
                "SELECT key_id FROM data_keys WHERE key_id != ?", (self.cipher.key_id,))]
            self.db.executemany("DELETE FROM data_keys WHERE key_id = ?", [(k,) for k in retired])
        self._checkpoint()
        return {"calls": counts["calls"], "shadow_results": counts["shadow_results"], "key_id": self.cipher.key_id,
                "retired": retired, "not_resealed": stale}

    def set_task_ids(self, mapping: dict[str, str | None]) -> None:
        with self._lock, self.db:
            self.db.executemany("UPDATE calls SET task_id = ? WHERE id = ?", [(t, i) for i, t in mapping.items()])

    def add_key(self, key: ApiKey) -> None:
        try:
            with self._lock, self.db:
                self.db.execute(
                    "INSERT INTO api_keys VALUES (?, ?, ?, ?, ?)",
                    (key.name, key.role, key.key_hash, key.created_ts, key.revoked_ts),
                )
        except sqlite3.IntegrityError as e:
            raise ValueError(f"A key named {key.name!r} already exists; pick another --name.") from e

    def list_keys(self) -> list[ApiKey]:
        with self._lock:
            rows = self.db.execute("SELECT * FROM api_keys ORDER BY created_ts").fetchall()
        return [ApiKey(**dict(r)) for r in rows]

    def revoke_key(self, name: str) -> bool:
        with self._lock, self.db:
            cur = self.db.execute(
                "UPDATE api_keys SET revoked_ts = ? WHERE name = ? AND revoked_ts IS NULL", (time.time(), name)
            )
        return cur.rowcount > 0

    def set_route(self, route: Route, decision: Decision | None = None) -> None:
        if route.mode not in MODES:
            raise ValueError(f"unknown mode {route.mode!r}; use one of {', '.join(MODES)}")
        route.updated_ts = max(time.time(), self.routes_version() + 1e-6)
        with self._lock, self.db:
            self.db.execute("INSERT OR REPLACE INTO routes VALUES (?, ?, ?, ?, ?, ?)",
                            (route.task_id, route.mode, route.specialist, route.canary_share, route.min_confidence,
                             route.updated_ts))
            if decision is not None:
                self._insert_decision(decision)

    def add_decision(self, decision: Decision) -> None:
        with self._lock, self.db:
            self._insert_decision(decision)

    def _insert_decision(self, d: Decision) -> None:
        d.ts = d.ts or time.time()
        cur = self.db.execute(
            "INSERT INTO decisions (ts, task_id, action, mode_from, mode_to, specialist, reason, evidence_json, actor)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (d.ts, d.task_id, d.action, d.mode_from, d.mode_to, d.specialist, d.reason,
             orjson.dumps(d.evidence, option=orjson.OPT_SERIALIZE_NUMPY).decode(), d.actor),
        )
        d.id = cur.lastrowid

    def routes(self) -> dict[str, Route]:
        with self._lock:
            rows = self.db.execute("SELECT * FROM routes ORDER BY task_id").fetchall()
        return {r["task_id"]: Route(**dict(r)) for r in rows}

    def routes_version(self) -> float:
        with self._lock:
            return self.db.execute("SELECT COALESCE(MAX(updated_ts), 0) FROM routes").fetchone()[0]

    def decisions(self, task_id: str | None = None, limit: int | None = None) -> list[Decision]:
        sql, args = "SELECT * FROM decisions", []
        if task_id is not None:
            sql, args = sql + " WHERE task_id = ?", [task_id]
        sql += " ORDER BY ts DESC, id DESC" + (f" LIMIT {int(limit)}" if limit else "")
        with self._lock:
            rows = self.db.execute(sql, args).fetchall()
        out = []
        for r in rows:
            d = dict(r)
            d["evidence"] = orjson.loads(d.pop("evidence_json"))
            out.append(Decision(**d))
        return out

    def add_shadow_result(self, r: ShadowResult) -> None:
        r.ts = r.ts or time.time()
        with self._lock, self.db:
            answer = None if r.answer is None else orjson.dumps(r.answer).decode()
            self.db.execute("INSERT OR REPLACE INTO shadow_results VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                            (r.call_id, r.ts, r.task_id, r.specialist, int(r.agree), r.score, int(r.valid),
                             r.confidence, r.latency_ms, seal_text(self.cipher, answer, r.call_id, "shadow_answer")))

    def shadow_results(self, task_id: str | None = None, since: float | None = None) -> list[ShadowResult]:
        clauses, args = [], []
        if task_id is not None:
            clauses, args = ["task_id = ?"], [task_id]
        if since is not None:
            clauses.append("ts >= ?")
            args.append(since)
        where = " WHERE " + " AND ".join(clauses) if clauses else ""
        with self._lock:
            rows = self.db.execute(f"SELECT * FROM shadow_results{where} ORDER BY ts, call_id", args).fetchall()
        out = []
        for r in rows:
            d = dict(r)
            answer = open_text(self.cipher, d.pop("answer_json"), d["call_id"], "shadow_answer")
            out.append(ShadowResult(**d | {"agree": bool(d["agree"]), "valid": bool(d["valid"]),
                                           "answer": None if answer is None else orjson.loads(answer)}))
        return out

    def close(self) -> None:
        with self._lock:
            self.db.close()


def _clean(d: dict) -> dict:
    d["errors"] = d.get("errors") or 0
    d["calls_unknown_cost"] = d.get("calls_unknown_cost") or 0
    d["cost_usd"] = round(d["cost_usd"], 6)
    if d.get("mean_latency_ms") is not None:
        d["mean_latency_ms"] = round(d["mean_latency_ms"], 2)
    return d


register_store("sqlite", SQLiteStore)
