"""Keeping the log safe: encryption at rest, key rotation, retention and `protege forget`.

The store tests run on SQLite and on PostgreSQL (`store_url`, tests/conftest.py); those about SQLite's files
(freed pages, WAL) or the gateway's own SQLite store use a SQLite path directly.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import httpx2
import orjson
import pytest
from typer.testing import CliRunner

from protege.cli import app
from protege.records import CallRecord
from protege.store import ShadowResult, open_store
from protege.store.crypto import DataCipher, DataKeyError, new_key_text, parse_key
from protege.store.spool import CallLog
from tests.conftest import recorded_pairs

MARKER = "Zebra-Quartz-7781 lives at 12 Orchard Lane"
"""A prompt that must never be found on disk in plaintext once encryption is on."""


@pytest.fixture
def marker() -> str:
    """A prompt unique to this test (the PostgreSQL server, and so its files, serve the whole session)."""
    return f"Zebra-Quartz-{uuid.uuid4().hex[:10]} lives at 12 Orchard Lane"


@pytest.fixture
def disk(request, tmp_path, store_url):
    """The folders holding what the test wrote: its tmp_path (SQLite file, WAL, spool) and, on PostgreSQL, the test
    database's files and the server's WAL, after a CHECKPOINT (so that pages are on disk, not only in memory)."""
    def folders() -> list[Path]:
        if not store_url.startswith("postgresql"):
            return [tmp_path]
        import psycopg

        server = request.getfixturevalue("pg_server")
        with psycopg.connect(store_url, autocommit=True) as conn:
            conn.execute("CHECKPOINT")
            oid = conn.execute("SELECT oid FROM pg_database WHERE datname = current_database()").fetchone()[0]
        return [tmp_path, server.data / "base" / str(oid), server.data / "pg_wal"]
    return folders


def raw_request(store, call_id: str) -> str:
    """The request column as stored, on either backend."""
    if hasattr(store, "db"):
        return store.db.execute("SELECT request_json FROM calls WHERE id = ?", (call_id,)).fetchone()[0]
    with store._conn() as conn:
        return conn.execute("SELECT request_json FROM calls WHERE id = %s", (call_id,)).fetchone()["request_json"]


def overwrite_request(store, call_id: str, value: str) -> None:
    if hasattr(store, "db"):
        with store.db:
            store.db.execute("UPDATE calls SET request_json = ? WHERE id = ?", (value, call_id))
        return
    with store._conn() as conn:
        conn.execute("UPDATE calls SET request_json = %s WHERE id = %s", (value, call_id))


@pytest.fixture
def data_key(monkeypatch) -> str:
    key = new_key_text()
    monkeypatch.setenv("PROTEGE_DATA_KEY", key)
    monkeypatch.delenv("PROTEGE_DATA_KEY_FILE", raising=False)
    monkeypatch.delenv("PROTEGE_OLD_DATA_KEY", raising=False)
    return key


def call(i: int, text: str = "hello", **kw) -> CallRecord:
    return CallRecord(id=f"c{i:04d}", ts=kw.pop("ts", 1000.0 + i),
                      request={"model": "m", "messages": [{"role": "user", "content": text}], **kw.pop("extra", {})},
                      response={"choices": [{"message": {"role": "assistant", "content": f"re: {text}"}}]}, **kw)


def files_containing(folders: Path | list[Path], needle: str) -> list[str]:
    """Every file under `folders` (the database, its WAL, the spool...) whose bytes contain `needle`."""
    return [str(p) for folder in (folders if isinstance(folders, list) else [folders]) for p in folder.rglob("*")
            if p.is_file() and needle.encode() in p.read_bytes()]


# -- encryption at rest ------------------------------------------------------------------------------------------
def test_sealed_fields_round_trip_and_no_plaintext_reaches_the_disk(tmp_path, store_url, data_key, marker, disk):
    with open_store(store_url) as store:
        log = CallLog(store, tmp_path / "spool")
        log.log(call(1, marker, error=f"upstream said: {marker}", metadata={"task": "triage", "note": marker}))
        log.log(call(2, "plain words", extra={"user": "u-42"}))
        assert log.flush(5)
        spooled = [p for p in (tmp_path / "spool").iterdir() if b"c0001" in p.read_bytes()]
        assert spooled, "the spool holds the call (by id) before it is removed"
        assert files_containing(disk(), marker) == []
        log.close()
        store.add_shadow_result(ShadowResult("c0001", "triage", True, 1.0, True, answer={"content": marker}))
        got = store.get_call("c0001")
        assert got.request["messages"][0]["content"] == marker and got.error.endswith(marker)
        assert got.metadata == {"task": "triage", "note": marker}
        assert store.shadow_results()[0].answer == {"content": marker}
        # stats read the caller's task label inside the sealed metadata
        assert {r["name"]: r["calls"] for r in store.stats()["by_task_label"]} == {"triage": 1, None: 1}
        assert raw_request(store, "c0001").startswith("enc1:")  # sealed, not missing
    assert files_containing(disk(), marker) == []


def test_without_encryption_the_same_check_finds_the_prompt(store_url, monkeypatch, marker, disk):
    """The grep above can fail: the very same write, unsealed, leaves the prompt on disk."""
    monkeypatch.delenv("PROTEGE_DATA_KEY", raising=False)
    with open_store(store_url) as store:
        store.add_calls([call(1, marker)])
    assert files_containing(disk(), marker)


def test_missing_wrong_and_malformed_keys_are_clear_errors(tmp_path, store_url, data_key, monkeypatch):
    with open_store(store_url) as store:
        store.add_calls([call(1, MARKER)])
    monkeypatch.delenv("PROTEGE_DATA_KEY")
    with pytest.raises(DataKeyError, match="no data key is set. Fix: export PROTEGE_DATA_KEY"):
        open_store(store_url)  # opening without the key would write new calls in plaintext: refused
    monkeypatch.setenv("PROTEGE_DATA_KEY", new_key_text())
    with pytest.raises(DataKeyError, match="protege keys rotate-data"):
        open_store(store_url)
    monkeypatch.setenv("PROTEGE_DATA_KEY", "not-a-key")
    with pytest.raises(DataKeyError, match=r"\$PROTEGE_DATA_KEY is not base64 of 32 bytes.*new-data-key"):
        open_store(store_url)
    monkeypatch.setenv("PROTEGE_DATA_KEY", data_key)
    result = CliRunner().invoke(app, ["logs", "list", "--database", store_url])
    assert result.exit_code == 0 and "c0001" in result.output
    monkeypatch.delenv("PROTEGE_DATA_KEY")
    result = CliRunner().invoke(app, ["logs", "list", "--database", store_url])
    assert result.exit_code == 1 and "PROTEGE_DATA_KEY" in result.output and "Traceback" not in result.output


def test_a_ciphertext_moved_to_another_row_or_tampered_with_does_not_open(store_url, data_key):
    with open_store(store_url) as store:
        store.add_calls([call(1, "one"), call(2, "two")])
        req1 = raw_request(store, "c0001")
        overwrite_request(store, "c0002", req1)
        with pytest.raises(DataKeyError, match="c0002/request does not authenticate"):
            store.get_call("c0002")
        flipped = req1[:-6] + ("A" if req1[-6] != "A" else "B") + req1[-5:]
        overwrite_request(store, "c0001", flipped)
        with pytest.raises(DataKeyError, match="modified or damaged"):
            store.get_call("c0001")
    shown = subprocess.run([sys.executable, "-m", "protege", "logs", "show", "c0001", "--database", store_url],
                           check=False, capture_output=True, text=True, timeout=60)
    assert shown.returncode == 1 and "modified or damaged" in shown.stderr and "Traceback" not in shown.stderr


def test_key_file_from_settings_and_new_data_key_command(tmp_path, home, monkeypatch):
    monkeypatch.delenv("PROTEGE_DATA_KEY", raising=False)
    key_file = tmp_path / "keys" / "data.key"
    result = CliRunner().invoke(app, ["keys", "new-data-key", "--out", str(key_file)])
    assert result.exit_code == 0, result.output
    assert key_file.stat().st_mode & 0o777 == 0o600 and len(parse_key(key_file.read_text(), "test")) == 32
    again = CliRunner().invoke(app, ["keys", "new-data-key", "--out", str(key_file)])
    assert again.exit_code == 1 and "never overwritten" in again.output
    home.mkdir(parents=True, exist_ok=True)
    (home / "protege.toml").write_text(f'[encryption]\nkey_file = "{key_file}"\n')
    runner = CliRunner()
    assert runner.invoke(app, ["import", str(import_file(tmp_path))]).exit_code == 0
    assert files_containing(home, "charged twice") == []
    shown = runner.invoke(app, ["logs", "list", "--json"])
    assert shown.exit_code == 0 and len(orjson.loads(shown.output)) == 3
    (home / "protege.toml").write_text('[encryption]\nkey_file = "/nonexistent/data.key"\n')
    missing = runner.invoke(app, ["logs", "list"])
    assert missing.exit_code == 1 and "/nonexistent/data.key" in missing.output and "new-data-key" in missing.output


def import_file(tmp_path: Path) -> Path:
    path = tmp_path / "calls.jsonl"
    path.write_bytes(b"".join(orjson.dumps(p) + b"\n" for p in recorded_pairs()[:3]))
    return path


def test_rotation_keeps_every_call_readable_and_seals_old_plaintext(store_url, monkeypatch, marker, disk):
    monkeypatch.delenv("PROTEGE_DATA_KEY", raising=False)
    with open_store(store_url) as store:
        store.add_calls([call(1, marker)])  # logged before encryption was turned on
    old = new_key_text()
    monkeypatch.setenv("PROTEGE_DATA_KEY", old)
    with open_store(store_url) as store:
        store.add_calls([call(2, "sealed with the old key")])
        store.add_shadow_result(ShadowResult("c0002", "t", True, 1.0, True, answer={"content": "old answer"}))
    new = new_key_text()
    monkeypatch.setenv("PROTEGE_DATA_KEY", new)
    monkeypatch.setenv("PROTEGE_OLD_DATA_KEY", old)
    result = CliRunner().invoke(app, ["keys", "rotate-data", "--database", store_url, "--json"])
    assert result.exit_code == 0, result.output
    summary = orjson.loads(result.output)
    assert summary["calls"] == 2 and summary["shadow_results"] == 1 and summary["not_resealed"] == 0
    assert summary["retired"] == [DataCipher(parse_key(old, "old")).key_id]
    monkeypatch.delenv("PROTEGE_OLD_DATA_KEY")
    with open_store(store_url) as store:  # the new key alone reads everything
        assert [c.request["messages"][0]["content"] for c in store.iter_calls()] == [marker, "sealed with the old key"]
        assert store.shadow_results()[0].answer == {"content": "old answer"}
    if not store_url.startswith("postgresql"):  # PostgreSQL keeps old row versions until VACUUM (docs/security.md)
        assert files_containing(disk(), marker) == []  # the plaintext row was sealed and its old page overwritten
    monkeypatch.setenv("PROTEGE_DATA_KEY", old)
    with pytest.raises(DataKeyError, match="sealed with key"):
        open_store(store_url)


def test_gateway_seals_what_it_logs_and_recovers_its_sealed_spool(start_gateway, home, data_key):
    gw = start_gateway()
    recorded = recorded_pairs()[0]["request"]
    with httpx2.Client(timeout=10) as http:
        ok = http.post(f"{gw.url}/chat/completions", json={**recorded, "user": MARKER})
        unmatched = http.post(f"{gw.url}/chat/completions",
                              json={"model": "gpt-4o-mini", "messages": [{"role": "user", "content": MARKER}]})
    assert ok.status_code == 200 and unmatched.status_code >= 400
    ids = [ok.headers["x-protege-call-id"]]
    deadline = time.monotonic() + 10
    while not all(files_containing(home / "spool", i) for i in ids) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert files_containing(home / "spool", ids[0])
    gw.proc.send_signal(signal.SIGKILL)  # leaves its spool behind
    gw.proc.wait()
    assert files_containing(home, MARKER) == []
    gw2 = start_gateway()  # replays the dead process's sealed spool
    with open_store(home / "protege.db") as store:
        deadline = time.monotonic() + 10
        while store.get_call(ids[0]) is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert store.get_call(ids[0]).request["user"] == MARKER
        assert any(c.request["messages"][-1]["content"] == MARKER for c in store.iter_calls())
    assert gw2.proc.poll() is None and files_containing(home, MARKER) == []


def test_gateway_refuses_to_start_with_the_wrong_key(start_gateway, home, data_key, monkeypatch):
    with open_store(home / "protege.db") as store:
        store.add_calls([call(1)])
    monkeypatch.setenv("PROTEGE_DATA_KEY", new_key_text())
    with pytest.raises(RuntimeError, match="exited with code 1"):
        start_gateway()
    assert "PROTEGE_OLD_DATA_KEY" in (home / "gateway.log").read_text()


# -- forget ------------------------------------------------------------------------------------------------------
def _log_with_copies(store_url: str, tmp_path: Path) -> dict:
    """Calls of two users in one task, curated to disk, a LoRA-style and an answer-reuse specialist, the reuse
    one routed. Returns the paths."""
    from protege.curate.pipeline import curate_calls
    from protege.specialist.artifact import specialists_home, write_manifest
    from protege.store import Route
    from protege.train.reuse import INDEX, build_index

    calls = [call(i, f"{'alice' if i % 2 else 'bob'} asks question {i}: {MARKER if i == 1 else 'nothing'}",
                  task_id="t-triage", extra={"user": "alice" if i % 2 else "bob"}) for i in range(1, 9)]
    calls.append(call(9, "unassigned call from alice", extra={"user": "alice"}))
    with open_store(store_url) as store:
        store.add_calls(calls)
        curated = tmp_path / "curated"
        curate_calls(store.iter_calls(), curated, scrub=False, near_duplicate_threshold=None, test_share=0.25)
        lora = specialists_home() / "t-triage" / "v1"
        write_manifest(lora, {"task": "t-triage", "kind": "lora"})
        reuse = tmp_path / "elsewhere" / "reuse-v1"
        reuse.mkdir(parents=True)
        index = build_index([c for c in calls if c.task_id])
        for name in (INDEX, "heldout_" + INDEX):
            (reuse / name).write_text(json.dumps(index))
        write_manifest(reuse, {"task": "t-triage", "kind": "reuse"})
        store.set_route(Route("t-triage", "on", str(reuse)))
    return {"curated": curated, "lora": lora, "reuse": reuse, "index_size": len(index)}


def curated_ids(folder: Path) -> set[str]:
    return {orjson.loads(line)["id"] for p in folder.glob("*/*.jsonl") for line in p.read_bytes().splitlines()}


def test_forget_a_user_everywhere_with_encryption_on(tmp_path, home, store_url, data_key):
    from protege.flywheel.loop import _needs_training
    from protege.train.reuse import INDEX

    paths = _log_with_copies(store_url, tmp_path)
    alice = {"c0001", "c0003", "c0005", "c0007", "c0009"}
    assert alice & curated_ids(paths["curated"])
    dry = CliRunner().invoke(app, ["forget", "--user", "alice", "--dry-run", "--database", store_url])
    assert dry.exit_code == 0 and "Would delete 5 calls" in dry.output
    with open_store(store_url) as store:
        assert len(list(store.iter_calls())) == 9  # a dry run deletes nothing
    result = CliRunner().invoke(app, ["forget", "--user", "alice", "--database", store_url, "--json"])
    assert result.exit_code == 0, result.output
    report = orjson.loads(result.output)
    assert set(report["call_ids"]) == alice and report["by_task"] == {"t-triage": 4}
    assert sum(report["curated"].values()) == len(alice - {"c0009"})
    assert report["reuse_entries"] == {str(paths["reuse"].resolve()): 4}
    assert sorted(report["retrain"]["t-triage"]) == sorted(str(p.resolve()) for p in (paths["lora"], paths["reuse"]))
    with open_store(store_url) as store:
        assert {c.id for c in store.iter_calls()} == {"c0002", "c0004", "c0006", "c0008"}
        [decision] = store.decisions("t-triage", limit=1)
        assert decision.action == "retrain" and decision.actor == "user" and decision.mode_to == "on"
        assert "alice" not in decision.reason + json.dumps(decision.evidence)  # the selector's value is personal
        assert _needs_training(store, "t-triage", 4, 0.5).startswith("retrain: 4 of its calls were deleted")
    assert curated_ids(paths["curated"]) & alice == set() and curated_ids(paths["curated"])
    report_json = json.loads((paths["curated"] / "report.json").read_text())
    assert sum(sum(s.values()) for s in report_json["splits"].values()) == len(curated_ids(paths["curated"]))
    for name in (INDEX, "heldout_" + INDEX):
        assert len(json.loads((paths["reuse"] / name).read_text())) == paths["index_size"] - 4
    for folder in (paths["lora"], paths["reuse"]):
        assert json.loads((folder / "specialist.json").read_text())["retrain"]["forgotten_calls"] == 4


def test_forget_match_leaves_no_plaintext_behind(tmp_path, home, monkeypatch):
    """Without encryption, deleted rows must not linger in SQLite's free pages or WAL, nor in curated copies.
    (PostgreSQL keeps deleted row versions until VACUUM: there, encryption is what keeps them unreadable.)"""
    monkeypatch.delenv("PROTEGE_DATA_KEY", raising=False)
    store_url = str(tmp_path / "p.db")
    paths = _log_with_copies(store_url, tmp_path)
    assert files_containing(tmp_path, MARKER)
    with open_store(store_url) as gateway:  # a running gateway keeps the database, and so its WAL, open
        gateway.add_calls([call(20, "logged while the gateway runs")])
        result = CliRunner().invoke(app, ["forget", "--match", MARKER.upper()[:20], "--database", store_url])
        assert result.exit_code == 0, result.output
        assert "Deleted 1 calls: c0001" in result.output and "marked for retraining" in result.output
        assert files_containing(tmp_path, MARKER) == [], "a deleted prompt survives on disk"
    assert "c0001" not in curated_ids(paths["curated"]) and len(curated_ids(paths["curated"])) > 1


def test_forget_match_and_before_together_with_encryption_on(tmp_path, home, store_url, data_key):
    with open_store(store_url) as store:
        store.add_calls([call(1, MARKER, ts=100.0), call(2, MARKER, ts=5000.0), call(3, "other", ts=100.0)])
    result = CliRunner().invoke(app, ["forget", "--match", "orchard lane", "--before", "1000", "--database", store_url])
    assert result.exit_code == 0 and "Deleted 1 calls: c0001" in result.output
    with open_store(store_url) as store:
        assert sorted(c.id for c in store.iter_calls()) == ["c0002", "c0003"]


@pytest.mark.parametrize("args, message", [
    ([], "Say which calls to forget"),
    (["--match", "a"], "--match must be 3 to"),
    (["--match", "   ab    "], "--match must be 3 to"),
    (["--match", "x" * 10_001], "--match must be 3 to"),
    (["--user", ""], "--user must be a non-empty id"),
    (["--user", "u" * 5000], "--user must be a non-empty id"),
    (["--before", "9999-12-31"], "--before is in the future"),
    (["--before", "1e400"], "not infinite, NaN or negative"),
    (["--before", "nan"], "not infinite, NaN or negative"),
    (["--before", "-5"], "not infinite, NaN or negative"),
    (["--before", "yesterday; DROP TABLE calls"], "neither a Unix time nor an ISO date"),
])
def test_forget_refuses_empty_broad_and_malformed_selections(tmp_path, args, message):
    store_url = str(tmp_path / "p.db")  # the selection is checked before any store is read
    with open_store(store_url) as store:
        store.add_calls([call(1), call(2)])
    result = CliRunner().invoke(app, ["forget", *args, "--database", store_url])
    assert result.exit_code == 1 and message in " ".join(result.output.split()) and "Traceback" not in result.output
    with open_store(store_url) as store:
        assert len(list(store.iter_calls())) == 2


@pytest.mark.parametrize("value", ["'; DROP TABLE calls; --", "../../../../etc/passwd", "%%%", "___", "\x00\x00\x00",
                                   '"}]}{"', "c0001"])
def test_forget_treats_hostile_text_as_text(tmp_path, store_url, value, data_key):
    """SQL, LIKE wildcards, paths, NULs, JSON fragments or a call id are searched for literally: nothing matches."""
    with open_store(store_url) as store:
        store.add_calls([call(1, "harmless"), call(2, "also harmless")])
    for flag in ("--match", "--user"):
        result = CliRunner().invoke(app, ["forget", flag, value, "--database", store_url])
        assert result.exit_code == 0 and "Deleted 0 calls" in result.output, result.output
    with open_store(store_url) as store:
        assert len(list(store.iter_calls())) == 2 and store.decisions() == []


# -- retention ---------------------------------------------------------------------------------------------------
def test_retention_deletes_old_calls_from_store_and_curated_copies(tmp_path, home, store_url, data_key):
    from protege.curate.pipeline import curate_calls
    from protege.retention import enforce_retention

    now = time.time()
    old = [call(i, f"old {i}", ts=now - 40 * 86400, task_id="t") for i in range(1, 4)]
    new = [call(i, f"new {i}", ts=now - 86400, task_id="t") for i in range(4, 7)]
    with open_store(store_url) as store:
        store.add_calls(old + new)
        store.add_shadow_result(ShadowResult("c0001", "t", True, 1.0, True, ts=now))
        curate_calls(store.iter_calls(), tmp_path / "cur", scrub=False, near_duplicate_threshold=None, test_share=0.3)
        result = enforce_retention(store, days=30, now=now)
        assert result["deleted_calls"] == 3 and sum(result["curated"].values()) == 3
        assert [c.id for c in store.iter_calls()] == ["c0004", "c0005", "c0006"] and store.shadow_results() == []
        assert enforce_retention(store, days=30, now=now)["deleted_calls"] == 0
    assert curated_ids(tmp_path / "cur") == {"c0004", "c0005", "c0006"}


def test_gateway_enforces_retention_in_the_background(start_gateway, home):
    now = time.time()
    with open_store(home / "protege.db") as store:
        store.add_calls([call(1, ts=now - 3 * 86400), call(2, ts=now - 3600)])
    (home / "protege.toml").write_text("[retention]\ndays = 1\ninterval_s = 1\n")
    start_gateway()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        with open_store(home / "protege.db") as store:
            ids = [c.id for c in store.iter_calls()]
        if ids == ["c0002"]:
            break
        time.sleep(0.1)
    assert ids == ["c0002"]
    with open_store(home / "protege.db") as store:  # and again later, on its interval
        store.add_calls([call(3, ts=now - 2 * 86400)])
    time.sleep(2.5)
    with open_store(home / "protege.db") as store:
        assert [c.id for c in store.iter_calls()] == ["c0002"]


def test_retention_setting_is_validated(home, tmp_path):
    from protege.config import ConfigError, load_settings

    home.mkdir(parents=True, exist_ok=True)
    for bad in ("days = -1", "days = 0", 'days = "forever"', "interval_s = 0", "keep = 3"):
        (home / "protege.toml").write_text(f"[retention]\n{bad}\n")
        with pytest.raises(ConfigError, match="retention"):
            load_settings()
