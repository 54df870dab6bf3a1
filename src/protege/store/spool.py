"""Durable logging off the hot path: an append-only spool on disk drained into the store by a thread.

`CallLog.log(record)` appends one JSON line to this process's spool segment (a single `write(2)`,
tens of microseconds) and returns; the caller's response never waits for the database. A
background thread batches new lines into the store. Because every acknowledged call is on disk
before the caller sees its response, nothing is lost when the process is killed (even SIGKILL):
the next `CallLog` on the same spool folder replays segments left by dead processes, and every running one
looks for such segments every `RECOVER_EVERY_S`. Several processes (gateway workers) share one spool folder:
each writes only its own segments, named by its pid, and a replay is idempotent (the store skips ids it has), so a
segment replayed by two siblings at once is still stored once. The folder must be on the host's own disk (the pid
check is per host). The spool is unbounded on disk, so a slow database never drops calls; it only lets the spool
grow.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from pathlib import Path

import orjson

from protege.records import CallRecord
from protege.store.base import Store
from protege.store.crypto import DataCipher, opened_record, sealed_record

log = logging.getLogger(__name__)

SEGMENT_BYTES = 16 * 1024 * 1024
GATHER_S = 0.02
"""After a wake-up the writer thread waits this long for more calls, so it drains batches (one wake-up each)."""
RECOVER_EVERY_S = 10.0
"""How often a running process looks for segments left by dead ones (a killed sibling worker's): their calls
reach the store even when nothing restarts that worker."""


def _is_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _read_complete_lines(path: Path, offset: int = 0, cipher: DataCipher | None = None) -> tuple[list[CallRecord], int]:
    """Records from the complete lines of `path` after `offset`, and the offset after the last one."""
    with open(path, "rb") as f:
        f.seek(offset)
        data = f.read()
    end = data.rfind(b"\n") + 1
    records = []
    for line in data[:end].splitlines():
        try:
            records.append(CallRecord.from_dict(opened_record(cipher, orjson.loads(line))))
        except (orjson.JSONDecodeError, TypeError) as e:  # a torn write from a crash mid-line
            log.error("Skipping an unreadable spool line in %s: %s", path, e)
    return records, offset + end


def unloggable(record: CallRecord, error: BaseException) -> CallRecord:
    """The placeholder logged for a call that cannot be (its JSON does not serialise, scrubbing failed): the
    id, time, model, status and who served it, without the request, the answer or anything a caller wrote."""
    model = record.request.get("model") if isinstance(record.request, dict) else None
    return CallRecord(
        id=record.id, ts=record.ts, request={"model": model if isinstance(model, str) else None, "messages": []},
        source=record.source, client=record.client, served_by=record.served_by, status=record.status,
        latency_ms=record.latency_ms, ttft_ms=record.ttft_ms, requested_model=model if isinstance(model, str) else None,
        error=f"protege could not log this call ({type(error).__name__}); only this placeholder was kept",
        metadata={"log_error": type(error).__name__},
    )


class CallLog:
    """Accepts records on the hot path and makes sure each one reaches the store exactly once."""

    def __init__(self, store: Store, spool_dir: str | os.PathLike, *, segment_bytes: int = SEGMENT_BYTES):
        self.store = store
        self.cipher = store.cipher  # the spool is sealed with the store's key: nothing reaches the disk in plaintext
        self.spool_dir = Path(spool_dir)
        self.segment_bytes = segment_bytes
        try:
            self.spool_dir.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise RuntimeError(f"Cannot create the spool folder {self.spool_dir}: {e}. Set PROTEGE_HOME to a writable folder.") from e
        self.recovered = self.recover()
        self._prefix = f"{os.getpid()}-{int(time.time() * 1000)}"
        self._lock = threading.Lock()
        self._seq = 0
        self._segments: list[Path] = []  # this process's segments, oldest first; the last is open
        self._fd = self._open_segment()
        self._written = 0
        self._unspooled: list[CallRecord] = []  # only used while the disk refuses writes
        self._storing_unspooled = False
        self._read_offset = 0
        self._wake = threading.Event()
        self._hurry = threading.Event()  # flush() and close(): drain now, without gathering a batch
        self._closing = False
        self.logged = 0
        self.stored = 0
        self.spool_errors = 0
        self.store_errors = 0
        self._thread = threading.Thread(target=self._run, name="protege-call-log", daemon=True)
        self._thread.start()

    # -- hot path ---------------------------------------------------------------------------
    def log(self, record: CallRecord) -> None:
        """Make `record` durable and queue it for the store. Never raises."""
        try:
            line = self._line(record)
        except (orjson.JSONEncodeError, TypeError) as e:  # e.g. an upstream answer nested past orjson's limit
            log.error("Call %s cannot be serialised (%s); logging a placeholder instead.", record.id, e)
            record = unloggable(record, e)
            line = self._line(record)
        with self._lock:
            try:
                self._append(line)
                self._written += len(line)
                if self._written >= self.segment_bytes:
                    os.close(self._fd)
                    self._fd = self._open_segment()
                    self._written = 0
            except OSError as e:
                self.spool_errors += 1
                self._unspooled.append(record)
                if self.spool_errors == 1 or self.spool_errors % 1000 == 0:
                    log.error(
                        "Cannot write to the spool %s (%s); calls are kept in memory until the disk recovers "
                        "and are lost if this process dies. Free disk space or move PROTEGE_HOME.",
                        self.spool_dir, e,
                    )
            self.logged += 1
        if not self._wake.is_set():  # setting an Event takes a lock and notifies: skip it when already set
            self._wake.set()

    def _line(self, record: CallRecord) -> bytes:
        return orjson.dumps(sealed_record(self.cipher, record)) + b"\n"

    def _append(self, line: bytes) -> None:
        """Append `line` whole or not at all. A short write (the disk filled up mid-line) is retried for the
        rest; if that fails, the torn part is cut off again, so a later line never lands after half a record."""
        done = 0
        try:
            while done < len(line):
                done += os.write(self._fd, line[done:])
        except OSError:
            if done:
                os.ftruncate(self._fd, self._written)
            raise

    # -- background ---------------------------------------------------------------------------
    def _open_segment(self) -> int:
        path = self.spool_dir / f"{self._prefix}-{self._seq:06d}.jsonl"
        self._seq += 1
        self._segments.append(path)
        return os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)

    def _run(self) -> None:
        recovered_at = time.monotonic()
        while True:
            self._wake.wait(0.25)
            # gather a batch: while `_wake` stays set, calls skip the lock and notify of setting it (a wake-up
            # per call cost ~10% of the gateway's CPU); what is spooled is durable already, only its copy in
            # the store comes up to GATHER_S later
            self._hurry.wait(GATHER_S)
            self._wake.clear()
            self._hurry.clear()
            closing = self._closing
            try:
                if time.monotonic() - recovered_at > RECOVER_EVERY_S:  # a sibling worker may have died
                    recovered_at = time.monotonic()
                    self.recovered += self.recover()
                self._drain()
            except Exception as e:  # the database is down or full: keep the spool, retry later
                self.store_errors += 1
                log.error("Writing calls to the store failed (%s); they stay in the spool and will be retried.", e)
                if not closing:
                    time.sleep(1)
                    continue
            if closing:
                return

    def _drain(self) -> None:
        with self._lock:
            segments = list(self._segments)
            unspooled, self._unspooled = self._unspooled, []
            self._storing_unspooled = bool(unspooled)  # flush() waits for these too
        if unspooled:
            try:
                self.stored += self.store.add_calls(unspooled)
            except Exception:
                with self._lock:
                    self._unspooled[:0] = unspooled
                raise
            finally:
                self._storing_unspooled = False
        for i, path in enumerate(segments):
            is_open = i == len(segments) - 1
            records, end = _read_complete_lines(path, self._read_offset, self.cipher)
            if records:
                self.stored += self.store.add_calls(records)
            self._read_offset = end
            if is_open:
                break
            path.unlink(missing_ok=True)  # fully stored and closed: done with it
            with self._lock:
                self._segments.remove(path)
            self._read_offset = 0

    def recover(self) -> int:
        """Store what dead processes left in the spool; returns the number of records replayed."""
        replayed = 0
        for path in sorted(self.spool_dir.glob("*.jsonl")):
            pid = int(path.name.split("-", 1)[0]) if path.name.split("-", 1)[0].isdigit() else 0
            if pid == os.getpid() or (pid and _is_alive(pid)):
                continue
            records, _ = _read_complete_lines(path, cipher=self.store.cipher)
            if records:
                replayed += len(records)
                self.store.add_calls(records)  # INSERT OR IGNORE: a second recovery is harmless
            path.unlink(missing_ok=True)
        if replayed:
            log.warning("Recovered %d logged calls from the spool of a process that did not shut down cleanly.", replayed)
        return replayed

    @property
    def backlog(self) -> int:
        """Calls accepted but not yet confirmed in the store (an upper bound while draining)."""
        return self.logged - self.stored

    def flush(self, timeout: float = 30.0, stall_s: float | None = None) -> bool:
        """Wait until everything logged so far is in the store; with `stall_s`, give up sooner once the store
        has failed and nothing was stored for that long."""
        deadline = time.monotonic() + timeout
        progress_at, stored, errors = time.monotonic(), self.stored, self.store_errors
        while time.monotonic() < deadline:
            if self.stored != stored:
                progress_at, stored = time.monotonic(), self.stored
            elif stall_s is not None and self.store_errors > errors and time.monotonic() - progress_at > stall_s:
                return False
            with self._lock:
                pending = bool(self._unspooled) or self._storing_unspooled
                last = self._segments[-1]
                written = self._written
                single = len(self._segments) == 1
            if not pending and single and self._read_offset >= written and last == self._segments[-1]:
                return True
            self._hurry.set()
            self._wake.set()
            time.sleep(0.005)
        return False

    def close(self, timeout: float = 30.0, stall_s: float = 3.0) -> None:
        """Flush, stop the writer thread and remove this process's (fully stored) spool. When the store keeps
        failing, stop after `stall_s` without progress and say exactly what stays in the spool and what is lost."""
        if self._closing:
            return
        flushed = self.flush(timeout, stall_s)
        self._closing = True
        self._hurry.set()
        self._wake.set()
        self._thread.join(timeout)
        with self._lock:
            if flushed:
                os.close(self._fd)
                for path in self._segments:
                    path.unlink(missing_ok=True)
                self._segments.clear()
                return
            lost = []
            for record in self._unspooled:  # a last try: the disk may have room again
                line = self._line(record)
                try:
                    self._append(line)
                    self._written += len(line)
                except OSError:
                    lost.append(record.id)
            os.close(self._fd)
            kept = self.logged - self.stored - len(lost)
        log.error("Shut down with %d calls not yet in the store; they stay in %s for the next start.", kept, self.spool_dir)
        if lost:
            log.error("%d calls could be written neither to the spool nor to the store (disk full) and are lost: %s",
                      len(lost), ", ".join(lost[:100]) + (" ..." if len(lost) > 100 else ""))
