"""Drop-in clients: the official `openai` clients, logging every chat completion in-process.

    import protege
    client = protege.OpenAI(workload="support-agent")   # same arguments as openai.OpenAI
    client.chat.completions.create(model="gpt-4o-mini", messages=[...])

Logging happens in the HTTP transport, so streams, tool calls and raw responses are captured
exactly as the gateway would see them, and it goes through the same crash-safe spool. A failure
to log is reported in the log and never breaks the caller's call.
"""

from __future__ import annotations

import atexit
import logging
import threading
import time

import httpx2
import openai
import orjson

from protege.config import load_settings
from protege.curate.scrub import ingest_scrubber
from protege.openai_format import iter_sse_data, reassemble_chat_stream
from protege.pricing import PriceTable
from protege.records import CallRecord, fill_derived_fields, new_call_id
from protege.store import protege_home
from protege.store.spool import CallLog

log = logging.getLogger(__name__)

_shared: dict[str | None, tuple[CallLog, PriceTable, object]] = {}
_shared_lock = threading.Lock()


def _call_log(database: str | None) -> tuple[CallLog, PriceTable, object]:
    """One CallLog per database and process, flushed and closed at interpreter exit."""
    key = database or f"{protege_home()}"  # PROTEGE_HOME decides the defaults, so it keys the cache
    with _shared_lock:
        if key not in _shared:
            settings = load_settings(database=database)
            call_log = CallLog(settings.open_store(), settings.resolved_spool_dir())
            atexit.register(call_log.close)
            _shared[key] = (call_log, settings.price_table(), ingest_scrubber(settings.scrub_at_ingest))
        return _shared[key]


class _CallRecorder:
    """Turns one HTTP exchange with /chat/completions into a logged CallRecord."""

    def __init__(self, request: httpx2.Request, workload: str | None, database: str | None):
        self.t0 = time.perf_counter()
        self.record: CallRecord | None = None
        self.database = database
        try:
            body = orjson.loads(request.content)
            workload = request.headers.get("x-protege-workload") or workload
            self.record = CallRecord(id=new_call_id(), ts=time.time(), request=body, source="client", workload=workload,
                                     served_by=f"upstream:{request.url.host}")
        except Exception as e:  # never break the caller's call
            log.error("protege could not read a request for logging: %s", e)

    def finish(self, status: int, payload: bytes, streamed: bool, ttft_ms: float | None = None, error: str | None = None) -> None:
        if self.record is None:
            return
        try:
            r = self.record
            r.status, r.error, r.ttft_ms = status, error, ttft_ms
            r.latency_ms = (time.perf_counter() - self.t0) * 1000
            if streamed and status == 200:
                r.response = reassemble_chat_stream(iter_sse_data(payload))
            else:
                parsed = orjson.loads(payload) if payload else None
                if status == 200:
                    r.response = parsed
                else:
                    r.error = r.error or str((parsed or {}).get("error", {}).get("message") or f"HTTP {status}")
            if r.ttft_ms is None:
                r.ttft_ms = r.latency_ms
            call_log, prices, scrubber = _call_log(self.database)
            fill_derived_fields(r)
            r.cost_usd = prices.cost(r.upstream_model or r.requested_model, r.prompt_tokens, r.completion_tokens)
            call_log.log(r if scrubber is None else scrubber.scrub_record(r))
        except Exception as e:
            log.error("protege could not log a call: %s", e)


def _is_chat(request: httpx2.Request) -> bool:
    return request.method == "POST" and request.url.path.endswith("/chat/completions")


class _LoggedStream(httpx2.SyncByteStream):
    def __init__(self, inner, recorder: _CallRecorder, status: int, streamed: bool):
        self.inner, self.recorder, self.status, self.streamed = inner, recorder, status, streamed
        self.parts: list[bytes] = []
        self.ttft_ms: float | None = None

    def __iter__(self):
        error = None
        try:
            for chunk in self.inner:
                if self.ttft_ms is None:
                    self.ttft_ms = (time.perf_counter() - self.recorder.t0) * 1000
                self.parts.append(chunk)
                yield chunk
        except Exception as e:
            error = f"the response broke off: {e}"
            raise
        finally:
            self.recorder.finish(self.status, b"".join(self.parts), self.streamed, self.ttft_ms, error)

    def close(self) -> None:
        self.inner.close()


class _AsyncLoggedStream(httpx2.AsyncByteStream):
    def __init__(self, inner, recorder: _CallRecorder, status: int, streamed: bool):
        self.inner, self.recorder, self.status, self.streamed = inner, recorder, status, streamed
        self.parts: list[bytes] = []
        self.ttft_ms: float | None = None

    async def __aiter__(self):
        error = None
        try:
            async for chunk in self.inner:
                if self.ttft_ms is None:
                    self.ttft_ms = (time.perf_counter() - self.recorder.t0) * 1000
                self.parts.append(chunk)
                yield chunk
        except Exception as e:
            error = f"the response broke off: {e}"
            raise
        finally:
            self.recorder.finish(self.status, b"".join(self.parts), self.streamed, self.ttft_ms, error)

    async def aclose(self) -> None:
        await self.inner.aclose()


class LoggingTransport(httpx2.BaseTransport):
    """Wraps a transport and logs each chat completion exchange once its body has been read."""

    def __init__(self, inner: httpx2.BaseTransport, workload: str | None = None, database: str | None = None):
        self.inner, self.workload, self.database = inner, workload, database

    def handle_request(self, request: httpx2.Request) -> httpx2.Response:
        if not _is_chat(request):
            return self.inner.handle_request(request)
        recorder = _CallRecorder(request, self.workload, self.database)
        try:
            response = self.inner.handle_request(request)
        except Exception as e:
            recorder.finish(599, b"", False, error=f"request failed: {e}")
            raise
        streamed = "text/event-stream" in response.headers.get("content-type", "")
        response.stream = _LoggedStream(response.stream, recorder, response.status_code, streamed)
        return response

    def close(self) -> None:
        self.inner.close()


class AsyncLoggingTransport(httpx2.AsyncBaseTransport):
    def __init__(self, inner: httpx2.AsyncBaseTransport, workload: str | None = None, database: str | None = None):
        self.inner, self.workload, self.database = inner, workload, database

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        if not _is_chat(request):
            return await self.inner.handle_async_request(request)
        recorder = _CallRecorder(request, self.workload, self.database)
        try:
            response = await self.inner.handle_async_request(request)
        except Exception as e:
            recorder.finish(599, b"", False, error=f"request failed: {e}")
            raise
        streamed = "text/event-stream" in response.headers.get("content-type", "")
        response.stream = _AsyncLoggedStream(response.stream, recorder, response.status_code, streamed)
        return response

    async def aclose(self) -> None:
        await self.inner.aclose()


class OpenAI(openai.OpenAI):
    """`openai.OpenAI` that logs its chat completions to protege's store (`workload=` tags them)."""

    def __init__(self, *args, workload: str | None = None, database: str | None = None, **kwargs):
        if kwargs.get("http_client") is None:
            kwargs["http_client"] = openai.DefaultHttpx2Client(
                transport=LoggingTransport(httpx2.HTTPTransport(), workload, database)
            )
        else:
            client = kwargs["http_client"]
            client._transport = LoggingTransport(client._transport, workload, database)
        super().__init__(*args, **kwargs)


class AsyncOpenAI(openai.AsyncOpenAI):
    """`openai.AsyncOpenAI` that logs its chat completions to protege's store."""

    def __init__(self, *args, workload: str | None = None, database: str | None = None, **kwargs):
        if kwargs.get("http_client") is None:
            kwargs["http_client"] = openai.DefaultAsyncHttpx2Client(
                transport=AsyncLoggingTransport(httpx2.AsyncHTTPTransport(), workload, database)
            )
        else:
            client = kwargs["http_client"]
            client._transport = AsyncLoggingTransport(client._transport, workload, database)
        super().__init__(*args, **kwargs)


def flush(timeout: float = 30.0) -> bool:
    """Wait until every call logged by the drop-in clients of this process is in the store."""
    return all(call_log.flush(timeout) for call_log, _, _ in list(_shared.values()))
