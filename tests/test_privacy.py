"""Keeping the log safe: encryption at rest, key rotation, retention and `protege forget`.

The store tests take a `store_url` fixture, so a second backend only adds a parameter to it.
"""

from __future__ import annotations

import signal
import time
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
def store_url(tmp_path) -> str:
    """The store under test (SQLite; a PostgreSQL URL would run the same tests)."""
    return str(tmp_path / "p.db")


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


def files_containing(folder: Path, needle: str) -> list[str]:
    """Every file under `folder` (the database, its WAL, the spool...) whose bytes contain `needle`."""
    return [str(p) for p in folder.rglob("*") if p.is_file() and needle.encode() in p.read_bytes()]


# -- encryption at rest ------------------------------------------------------------------------------------------
def test_sealed_fields_round_trip_and_no_plaintext_reaches_the_disk(tmp_path, store_url, data_key):
    with open_store(store_url) as store:
        log = CallLog(store, tmp_path / "spool")
        log.log(call(1, MARKER, error=f"upstream said: {MARKER}", metadata={"task": "triage", "note": MARKER}))
        log.log(call(2, "plain words", extra={"user": "u-42"}))
        assert log.flush(5)
        spooled = [p for p in (tmp_path / "spool").iterdir() if b"c0001" in p.read_bytes()]
        assert spooled, "the spool holds the call (by id) before it is removed"
        assert files_containing(tmp_path, MARKER) == []
        log.close()
        store.add_shadow_result(ShadowResult("c0001", "triage", True, 1.0, True, answer={"content": MARKER}))
        got = store.get_call("c0001")
        assert got.request["messages"][0]["content"] == MARKER and got.error.endswith(MARKER)
        assert got.metadata == {"task": "triage", "note": MARKER}
        assert store.shadow_results()[0].answer == {"content": MARKER}
        # stats read the caller's task label inside the sealed metadata
        assert {r["name"]: r["calls"] for r in store.stats()["by_task_label"]} == {"triage": 1, None: 1}
    assert files_containing(tmp_path, MARKER) == []
    raw = (tmp_path / "p.db").read_bytes()
    assert b"enc1:" in raw and b"c0001" in raw  # sealed, not missing


def test_without_encryption_the_same_check_finds_the_prompt(tmp_path, store_url, monkeypatch):
    """The grep above can fail: the very same write, unsealed, leaves the prompt on disk."""
    monkeypatch.delenv("PROTEGE_DATA_KEY", raising=False)
    with open_store(store_url) as store:
        store.add_calls([call(1, MARKER)])
    assert files_containing(tmp_path, MARKER)


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
        req1 = store.db.execute("SELECT request_json FROM calls WHERE id = 'c0001'").fetchone()[0]
        with store.db:
            store.db.execute("UPDATE calls SET request_json = ? WHERE id = 'c0002'", (req1,))
        with pytest.raises(DataKeyError, match="c0002/request does not authenticate"):
            store.get_call("c0002")
        flipped = req1[:-6] + ("A" if req1[-6] != "A" else "B") + req1[-5:]
        with store.db:
            store.db.execute("UPDATE calls SET request_json = ? WHERE id = 'c0001'", (flipped,))
        with pytest.raises(DataKeyError, match="modified or damaged"):
            store.get_call("c0001")


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


def test_rotation_keeps_every_call_readable_and_seals_old_plaintext(tmp_path, store_url, monkeypatch):
    monkeypatch.delenv("PROTEGE_DATA_KEY", raising=False)
    with open_store(store_url) as store:
        store.add_calls([call(1, MARKER)])  # logged before encryption was turned on
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
        assert [c.request["messages"][0]["content"] for c in store.iter_calls()] == [MARKER, "sealed with the old key"]
        assert store.shadow_results()[0].answer == {"content": "old answer"}
    assert files_containing(tmp_path, MARKER) == []  # the plaintext row was sealed and its old page overwritten
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
