"""What only the PostgreSQL store has to show: its migrations (from blank, from the first schema, several processes
starting at once), a clear error when the server cannot be reached, and values PostgreSQL's text refuses.
The rest of the store suite (tests/test_store.py) runs on both backends."""

from __future__ import annotations

import threading

import psycopg
import pytest

from protege.demo import free_port
from protege.records import CallRecord
from protege.store import CallFilter, open_store
from protege.store.postgres import MIGRATIONS, PostgresStore, apply_migrations


def test_migrations_from_blank_database_are_recorded_once(pg_server):
    url = pg_server.create_database()
    with open_store(url) as store:
        assert isinstance(store, PostgresStore) and store.migrations_applied == [n for n, _ in MIGRATIONS]
    with open_store(url.replace("postgresql://", "postgres://")) as store:  # both schemes; re-opening runs nothing
        assert store.migrations_applied == []
    with psycopg.connect(url) as conn:
        names = [r[0] for r in conn.execute("SELECT name FROM _migrations ORDER BY applied_ts")]
    assert names == [n for n, _ in MIGRATIONS]


def test_migrations_from_the_first_schema_keep_old_rows(pg_server):
    url = pg_server.create_database()
    with psycopg.connect(url, autocommit=True) as conn:
        assert apply_migrations(conn, upto="m001_calls") == ["m001_calls"]
        conn.execute("INSERT INTO calls (id, ts, source, status, request_json) "
                     """VALUES ('old1', 5.0, 'gateway', 200, '{"model": "gpt-4o", "messages": []}')""")
    with open_store(url) as store:
        assert store.migrations_applied == [n for n, _ in MIGRATIONS[1:]]
        [old] = list(store.iter_calls())
        assert old.id == "old1" and old.task_id is None and old.request["model"] == "gpt-4o" and old.stream is False
        store.set_task_ids({"old1": "t-extract"})
        assert store.get_call("old1").task_id == "t-extract" and store.list_keys() == []


def test_processes_starting_together_migrate_once(store_url):
    """Eight openers race on a blank database (each its own connection, as separate processes would be)."""
    url = store_url
    barrier, applied, errors = threading.Barrier(8), [], []

    def open_one() -> None:
        barrier.wait()
        try:
            with open_store(url) as store:
                applied.extend(store.migrations_applied)
        except Exception as e:  # noqa: BLE001 - collected and asserted below
            errors.append(e)

    threads = [threading.Thread(target=open_one) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert errors == []
    assert sorted(applied) == sorted(n for n, _ in MIGRATIONS)  # each migration run by exactly one opener


def test_unreachable_server_names_the_fix_and_hides_the_password():
    url = f"postgresql://bot:s3cret-pw@127.0.0.1:{free_port()}/protege"
    with pytest.raises(RuntimeError, match=r"Cannot open the PostgreSQL database postgresql://\*\*\*@127\.0\.0\.1") as e:
        open_store(url)
    assert "s3cret-pw" not in str(e.value) and "--database" in str(e.value)


def test_nul_characters_from_callers_are_stored_not_refused(store_url):
    """PostgreSQL text cannot hold NUL; a caller's NUL in a model name, workload or metadata must not make the
    batch fail (the spool would retry it forever)."""
    hostile = CallRecord(id="nul1", ts=1.0, workload="w\x00x", requested_model="gpt\x00-4o",
                         request={"model": "gpt\x00-4o", "messages": [{"role": "user", "content": "a\x00b"}]},
                         metadata={"task": "t\x00ask", "note": "\\u0000 literally"})
    plain = CallRecord(id="ok1", ts=2.0, requested_model="m", request={"model": "m", "messages": []}, metadata={"task": "t"})
    with open_store(store_url) as store:
        assert store.add_calls([hostile, plain]) == 2
        assert store.add_calls([hostile, plain, hostile]) == 0  # re-delivered, duplicates in one batch: no-ops
        got = store.get_call("nul1")
        assert got.request["messages"][0]["content"] == "a\x00b"  # the JSON body keeps it exactly
        stats = store.stats()  # (SQLite cuts the label at the NUL, PostgreSQL shows U+FFFD: either way it answers)
        assert stats["total"]["calls"] == 2 and "t" in {r["name"] for r in stats["by_task_label"]}
        assert [r.id for r in store.iter_calls(CallFilter(workload="no\x00such"))] == []
        assert store.stats(CallFilter(model="m"))["total"]["calls"] == 1


def test_hostile_filter_values_are_only_values(store_url):
    """Filter values (the admin routes pass query strings through) never become SQL: quotes, placeholders, a
    megabyte-long string and NUL select nothing and break nothing."""
    with open_store(store_url) as store:
        store.add_calls([CallRecord(id="a", ts=1.0, workload="w", request={"model": "m", "messages": []})])
        for value in ("w' OR '1'='1", "%s", "%(x)s", "?", "w\x00", "x" * 2**20, "w; DROP TABLE calls; --"):
            flt = CallFilter(workload=value, model=value, source=value, task_id=value)
            assert list(store.iter_calls(flt)) == [] and store.stats(flt)["total"]["calls"] == 0
        assert store.get_call("a' OR '1'='1") is None and store.get_call("%s") is None
        assert [r.id for r in store.iter_calls(CallFilter(workload="w"))] == ["a"]


def test_cli_says_what_to_fix_when_the_server_is_down(home):
    from typer.testing import CliRunner

    from protege.cli import app

    url = f"postgresql://bot:s3cret-pw@127.0.0.1:{free_port()}/protege"
    out = CliRunner().invoke(app, ["logs", "list", "--database", url])
    assert out.exit_code == 1 and "Cannot open the PostgreSQL database" in out.output
    assert "s3cret-pw" not in out.output and "Traceback" not in out.output
