"""The stores (SQLite and PostgreSQL, each test on both where it is not about one): migrations, queries,
import/export, and the spool's crash recovery."""

from __future__ import annotations

import gzip
import json
import os
import sqlite3
import time

import pytest
from typer.testing import CliRunner

from protege.cli import app
from protege.records import CallRecord
from protege.store import CallFilter, open_store
from protege.store.jsonl import import_jsonl, iter_export
from protege.store.spool import CallLog
from protege.store import Decision, Route, ShadowResult
from protege.store.sqlite import MIGRATIONS, apply_migrations
from tests.conftest import recorded_pairs


def record(i: int, **kw) -> CallRecord:
    return CallRecord(id=f"call{i:04d}", ts=1000.0 + i, request={"model": "m", "messages": [{"role": "user", "content": str(i)}]},
                      response={"choices": [{"message": {"role": "assistant", "content": "ok"}}]}, **kw)


def test_migrations_from_blank_database(tmp_path):
    with open_store(tmp_path / "p.db") as store:
        names = [r[0] for r in store.db.execute("SELECT name FROM _migrations ORDER BY rowid")]
        assert names == [name for name, _ in MIGRATIONS]
        assert store.db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    with open_store(tmp_path / "p.db") as store:  # re-opening runs nothing twice
        assert store.db.execute("SELECT COUNT(*) FROM _migrations").fetchone()[0] == len(MIGRATIONS)


def test_migrations_from_the_first_schema_keep_old_rows(tmp_path):
    db = sqlite3.connect(tmp_path / "old.db")
    apply_migrations(db, upto="m001_calls")
    db.execute(
        "INSERT INTO calls (id, ts, source, status, request_json) VALUES ('old1', 5.0, 'gateway', 200, ?)",
        (json.dumps({"model": "gpt-4o", "messages": []}),),
    )
    db.commit()
    db.close()
    with open_store(tmp_path / "old.db") as store:
        [old] = list(store.iter_calls())
        assert old.id == "old1" and old.task_id is None and old.request["model"] == "gpt-4o"
        store.set_task_ids({"old1": "t-extract"})
        assert store.get_call("old1").task_id == "t-extract"
        assert store.list_keys() == []


def test_routes_and_decisions_are_recorded_together(tmp_path, store_url):
    with open_store(store_url) as store:
        assert store.routes() == {} and store.routes_version() == 0
        store.set_route(Route("t-triage", "shadow", "/s/triage"),
                        Decision("t-triage", "promote", "off", "shadow", "quality 0.99 of the LLM", {"ratio": 0.99}))
        v1 = store.routes_version()
        store.set_route(Route("t-triage", "on", "/s/triage", min_confidence=0.4),
                        Decision("t-triage", "set", "shadow", "on", "by hand", actor="user"))
        store.add_decision(Decision("t-extract", "hold", None, "off", "62% valid outputs, needs 100%"))
        assert store.routes_version() > v1
        route = store.routes()["t-triage"]
        assert (route.mode, route.specialist, route.min_confidence) == ("on", "/s/triage", 0.4)
        newest, *_, oldest = store.decisions()
        assert newest.action == "hold" and oldest.evidence == {"ratio": 0.99} and oldest.actor == "gate"
        assert [d.mode_to for d in store.decisions("t-triage")] == ["on", "shadow"]
        with pytest.raises(ValueError, match="unknown mode 'always'"):
            store.set_route(Route("t-triage", "always"))
        store.add_shadow_result(ShadowResult("c1", "t-triage", agree=True, score=1.0, valid=True, confidence=0.9,
                                             answer={"role": "assistant", "content": "billing"}, ts=10.0))
        store.add_shadow_result(ShadowResult("c2", "t-triage", agree=False, score=0.0, valid=True, ts=20.0))
        assert [(r.call_id, r.agree) for r in store.shadow_results("t-triage")] == [("c1", True), ("c2", False)]
        assert store.shadow_results(since=15.0)[0].answer is None and store.shadow_results("x") == []


def test_corrupt_database_names_the_fix(tmp_path):
    path = tmp_path / "p.db"
    path.write_bytes(b"this is not a database" * 100)
    with pytest.raises(RuntimeError, match=r"move it aside .*protege import"):
        open_store(path)


def test_unknown_store_scheme_is_refused(tmp_path):
    with pytest.raises(ValueError, match="known schemes: postgres, postgresql, sqlite"):
        open_store("mongodb://x")


def test_filters_and_stats(tmp_path, store_url):
    with open_store(store_url) as store:
        store.add_calls([record(i, workload="a" if i % 2 else "b", prompt_tokens=10, completion_tokens=2,
                                cost_usd=0.01, metadata={"task": f"t{i % 3}"}) for i in range(30)])
        assert store.add_calls([record(0)]) == 0  # ids are unique: re-adding is a no-op
        assert len(list(store.iter_calls(CallFilter(workload="a")))) == 15
        assert [r.id for r in store.iter_calls(CallFilter(since=1010, until=1013))] == ["call0010", "call0011", "call0012"]
        newest = list(store.iter_calls(limit=2, newest_first=True))
        assert [r.id for r in newest] == ["call0029", "call0028"]
        stats = store.stats()
        assert stats["total"]["calls"] == 30 and stats["total"]["prompt_tokens"] == 300
        assert stats["total"]["cost_usd"] == pytest.approx(0.3)
        assert {r["name"]: r["calls"] for r in stats["by_task_label"]} == {"t0": 10, "t1": 10, "t2": 10}
        assert store.stats(CallFilter(workload="b"))["total"]["calls"] == 15


def test_spool_replays_what_a_dead_process_left(tmp_path, store_url):
    """A segment written by a process that no longer runs (here: a pid that cannot exist) is replayed."""
    spool = tmp_path / "spool"
    spool.mkdir()
    lines = b"".join(orjson_line(record(i)) for i in range(5))
    (spool / "999999999-1-000000.jsonl").write_bytes(lines + b'{"id": "torn')  # a torn last write
    store = open_store(store_url)
    call_log = CallLog(store, spool)
    assert call_log.recovered == 5
    assert len(list(store.iter_calls())) == 5
    assert not (spool / "999999999-1-000000.jsonl").exists()
    call_log.close()
    store.close()


def orjson_line(r: CallRecord) -> bytes:
    return r.to_json() + b"\n"


def test_spool_rotates_segments_and_drains_them(tmp_path, store_url):
    store = open_store(store_url)
    call_log = CallLog(store, tmp_path / "spool", segment_bytes=2000)
    for i in range(200):
        call_log.log(record(i))
    assert call_log.flush(30)
    assert len(list(store.iter_calls())) == 200
    call_log.close()
    store.close()
    assert list((tmp_path / "spool").glob("*.jsonl")) == []


def test_spool_keeps_calls_when_the_database_fails(tmp_path, store_url):
    """A store that raises leaves the calls in the spool; they arrive once it works again."""
    store = open_store(store_url)
    real_add = store.add_calls
    failures = {"left": 3}

    def flaky_add(records):
        if failures["left"]:
            failures["left"] -= 1
            raise sqlite3.OperationalError("database or disk is full")
        return real_add(records)

    store.add_calls = flaky_add
    call_log = CallLog(store, tmp_path / "spool")
    for i in range(20):
        call_log.log(record(i))
    assert call_log.flush(30)
    assert call_log.store_errors == 3
    assert len(list(store.iter_calls())) == 20
    call_log.close()
    store.close()


def test_import_reports_bad_lines_and_is_idempotent(tmp_path, store_url):
    pairs = recorded_pairs()[:5]
    lines = [json.dumps(p | {"metadata": {"task": "demo", "workload": "w1", "ts": 1700000000 + i}}) for i, p in enumerate(pairs)]
    lines.insert(2, "{broken json")
    lines.insert(4, json.dumps({"hello": "world"}))
    lines.append(json.dumps({"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello!"}]}))
    lines.append(json.dumps({"messages": [{"role": "user", "content": "no answer"}]}))
    path = tmp_path / "log.jsonl.gz"
    path.write_bytes(gzip.compress("\n".join(lines).encode()))
    with open_store(store_url) as store:
        report = import_jsonl(store, path)
        assert (report.read, report.added) == (9, 6)
        assert [n for n, _ in report.bad_lines] == [3, 5, 9]
        reasons = [r for _, r in report.bad_lines]
        assert "invalid JSON" in reasons[0] and "expected {'request'" in reasons[1] and "at least two" in reasons[2]
        again = import_jsonl(store, path)
        assert (again.added, again.duplicates) == (0, 6)
        calls = list(store.iter_calls())
        tagged = [c for c in calls if c.metadata.get("task") == "demo"]
        assert len(tagged) == 5 and all(c.workload == "w1" and c.source == "import" for c in tagged)
        ft = [c for c in calls if c.metadata == {}]
        assert ft[0].response["choices"][0]["message"]["content"] == "hello!"


def test_bad_line_reasons_are_specific(tmp_path, store_url):
    path = tmp_path / "log.jsonl"
    path.write_text("{nope\n" + json.dumps({"messages": [{"role": "user", "content": "x"}, {"role": "user", "content": "y"}]}) + "\n")
    with open_store(store_url) as store:
        report = import_jsonl(store, path)
    assert report.bad_lines[0][0] == 1 and "invalid JSON" in report.bad_lines[0][1]
    assert report.bad_lines[1] == (2, "the last message must be the assistant's answer")


def test_export_chat_and_raw_round_trip(tmp_path, new_store_url):
    path = tmp_path / "log.jsonl"
    path.write_text("\n".join(json.dumps(p | {"metadata": {"workload": "w"}}) for p in recorded_pairs()[:6]))
    with open_store(new_store_url()) as store:
        import_jsonl(store, path)
        chat = [json.loads(line) for line in iter_export(store, fmt="chat")]
        raw = [json.loads(line) for line in iter_export(store, CallFilter(workload="w"), fmt="raw")]
    assert len(chat) == len(raw) == 6
    tool_example = next(e for e in chat if "tools" in e and e["messages"][-1].get("tool_calls"))
    assert tool_example["messages"][-1]["role"] == "assistant"
    assert {"id", "ts", "request", "response", "metadata", "cost_usd"} <= set(raw[0])
    # chat export re-imports to the same number of calls
    (tmp_path / "chat.jsonl").write_text("".join(json.dumps(e) + "\n" for e in chat))
    with open_store(new_store_url()) as store:
        assert import_jsonl(store, tmp_path / "chat.jsonl").added == 6


def test_cli_import_export_logs_and_keys(tmp_path, home, store_url, monkeypatch):
    monkeypatch.setenv("PROTEGE_DATABASE_URL", store_url)
    runner = CliRunner()
    path = tmp_path / "log.jsonl"
    path.write_text("\n".join(json.dumps(p) for p in recorded_pairs()[:4]) + "\nnot json\n")
    out = runner.invoke(app, ["import", str(path), "--workload", "cli", "--json"])
    assert out.exit_code == 0, out.output
    assert json.loads(out.output)["added"] == 4 and json.loads(out.output)["bad"] == 1
    listed = json.loads(runner.invoke(app, ["logs", "list", "--json"]).output)
    assert len(listed) == 4 and all(r["workload"] == "cli" for r in listed)
    assert listed[0]["cost_usd"] is not None  # priced on import
    shown = json.loads(runner.invoke(app, ["logs", "show", listed[0]["id"]]).output)
    assert shown["id"] == listed[0]["id"]
    missing = runner.invoke(app, ["logs", "show", "nope"])
    assert missing.exit_code == 1 and "protege logs list" in missing.output
    out = runner.invoke(app, ["export", "--format", "raw", "--out", str(tmp_path / "raw.jsonl")])
    assert out.exit_code == 0 and len((tmp_path / "raw.jsonl").read_text().splitlines()) == 4
    out = runner.invoke(app, ["export", "--since", "yesterday"])
    assert out.exit_code == 1 and "--since" in out.output
    out = runner.invoke(app, ["keys", "create", "--name", "bot", "--role", "client"])
    assert out.exit_code == 0 and out.stdout.strip().startswith("pk-")
    out = runner.invoke(app, ["keys", "create", "--name", "bot"])
    assert out.exit_code == 1 and "already exists" in out.output
    out = runner.invoke(app, ["keys", "create", "--name", "x", "--role", "root"])
    assert out.exit_code == 1 and "--role client" in out.output
    assert runner.invoke(app, ["keys", "revoke", "bot"]).exit_code == 0
    keys = json.loads(runner.invoke(app, ["keys", "list", "--json"]).output)
    assert keys[0]["name"] == "bot" and keys[0]["revoked_ts"] is not None
    assert runner.invoke(app, ["import", str(tmp_path / "nope.jsonl")]).exit_code == 1


def test_importing_protege_does_not_import_heavy_modules():
    import subprocess
    import sys

    code = ("import sys, protege, protege.store, protege.records, protege.store.spool; "
            "heavy = [m for m in ('torch', 'transformers', 'openai', 'llama_cpp') if m in sys.modules]; print(heavy)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=os.environ | {"PYTHONPATH": "src"})
    assert out.stdout.strip() == "[]", out.stderr


def test_record_ids_are_time_sortable():
    from protege.records import new_call_id

    a = new_call_id()
    time.sleep(0.002)
    assert new_call_id() > a


def test_full_disk_keeps_calls_in_memory_and_says_so(tmp_path, store_url, monkeypatch, caplog):
    """When the spool cannot be written (ENOSPC), calls still reach the store and the error names the fix."""
    import errno

    from protege.store import spool as spool_module

    store = open_store(store_url)
    call_log = CallLog(store, tmp_path / "spool")
    real_write = os.write

    def full_disk(fd, data):
        if fd == call_log._fd:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_write(fd, data)

    monkeypatch.setattr(spool_module.os, "write", full_disk)
    with caplog.at_level("ERROR"):
        for i in range(10):
            call_log.log(record(i))
    assert call_log.flush(30)
    assert call_log.spool_errors == 10 and len(list(store.iter_calls())) == 10
    assert "Free disk space or move PROTEGE_HOME" in caplog.text
    monkeypatch.undo()
    call_log.close()
    store.close()
