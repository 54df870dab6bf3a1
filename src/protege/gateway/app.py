"""The OpenAI-compatible gateway: forwards chat completions upstream and logs every call.

Build it with `create_app(settings)`; `protege serve` runs it on uvicorn. The request body is
forwarded byte for byte (every field passes through untouched); streams are relayed chunk by
chunk and reassembled for the log. Logging goes through the crash-safe spool (`CallLog`), so
the response never waits for the database.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import os
import threading
import time
from typing import Any

import aiohttp
import orjson
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route
from yarl import URL

from protege.config import Settings, UpstreamConfig, redact_credentials
from protege.curate.scrub import ingest_scrubber
from protege.gateway.auth import Caller, KeyRing, is_loopback, open_network_refusal
from protege.gateway.metrics import GatewayMetrics
from protege.openai_format import SSEEvents, error_body, iter_sse_data, reassemble_chat_stream
from protege.pricing import local_cost
from protege.records import CallRecord, call_scope, fill_derived_fields, new_call_id, workload_of
from protege.retention import enforce_retention
from protege.route.router import RouteDecision, Router
from protege.store import CallFilter, Store
from protege.store.spool import CallLog, unloggable

log = logging.getLogger(__name__)

RETRY_STATUSES = {429, 502, 503, 504}
DROP_HEADERS = frozenset((
    "host", "content-length", "authorization", "connection", "keep-alive", "transfer-encoding", "te", "trailer",
    "upgrade", "proxy-authorization", "proxy-connection", "accept-encoding",
))
WORKLOAD_HEADER = "x-protege-workload"
MAX_JSON_DEPTH = 64
"""Deepest nesting of arrays and objects a request may have (tool schemas need a dozen or so levels)."""
LOCAL_CONTEXT = 8192
"""Context length assumed for a local model whose catalog entry names none."""
MAX_N = 128
"""OpenAI's own bound on `n`, the number of choices."""


def _error(status: int, message: str, type_: str = "invalid_request_error", code: str | None = None,
           param: str | None = None, headers: dict[str, str] | None = None) -> Response:
    return Response(orjson.dumps(error_body(message, type_, code, param)), status, media_type="application/json",
                    headers=headers)


def _runtime_error(e: Exception, call_id: str) -> Response:
    """A local runtime's refusal as OpenAI's error JSON, with `Retry-After` when its queue is full."""
    retry = getattr(e, "retry_after_s", None)
    headers = {"x-protege-call-id": call_id} | ({"retry-after": str(int(retry))} if retry is not None else {})
    return _error(getattr(e, "status", 500), str(e), "local_model_error", getattr(e, "code", None), headers=headers)


class UpstreamUnavailable(Exception):
    def __init__(self, status: int, message: str, code: str):
        super().__init__(message)
        self.status, self.message, self.code = status, message, code


class Gateway:
    """The state behind the routes: settings, store, call log, keys, HTTP session, metrics."""

    def __init__(self, settings: Settings, store: Store | None = None, local_models: Any = None):
        self.settings = settings
        self.prices = settings.price_table()
        self.store = store or settings.open_store()
        self.call_log = CallLog(self.store, settings.resolved_spool_dir())
        self.keys = KeyRing(self.store, settings.routing.refresh_s, open_mode=settings.gateway.open_mode)
        self.metrics = GatewayMetrics(self.call_log)
        self.local_models = local_models
        self.scrubber = ingest_scrubber(settings.scrub_at_ingest)
        self.session: aiohttp.ClientSession | None = None
        self.router: Router | None = None
        self.retention_task: asyncio.Task | None = None
        if local_models is not None:
            self.router = Router(self.store, local_models, settings)

    async def start(self) -> None:
        g = self.settings.gateway
        timeout = aiohttp.ClientTimeout(total=None, connect=g.connect_timeout_s, sock_read=g.timeout_s)
        connector = aiohttp.TCPConnector(limit=0, ttl_dns_cache=300, enable_cleanup_closed=True)
        self.session = aiohttp.ClientSession(timeout=timeout, connector=connector, auto_decompress=True)
        if self.keys.is_open:
            if not (is_loopback(g.host) or g.allow_open_network):
                raise RuntimeError(open_network_refusal(g.host))
            log.warning(
                "protege gateway is in OPEN MODE (%s): anyone who can reach it may call completions and read "
                "the logs. For shared use run `protege keys create --name ops --role admin`.",
                "--open" if g.open_mode else "no API key was ever created",
            )
        self.keys.start()
        if not self.settings.upstreams:
            log.warning("No upstream configured: only local models can answer. Use --upstream URL or protege.toml.")
        if self.router is not None:
            await run_in_threadpool(self.router.start)
        if self.settings.retention.days is not None:
            self.retention_task = asyncio.create_task(self._enforce_retention())

    async def _enforce_retention(self) -> None:
        """Delete calls older than [retention] days now and every interval_s (several workers may each do it:
        the deletes are idempotent)."""
        r = self.settings.retention
        while True:
            try:
                await run_in_threadpool(enforce_retention, self.store, r.days)
            except Exception:  # a locked or failing database: try again next time, never stop serving
                log.exception("Enforcing [retention] days = %g failed; retrying in %g s", r.days, r.interval_s)
            await asyncio.sleep(r.interval_s)

    async def stop(self) -> None:
        self.keys.stop()
        if self.retention_task is not None:
            self.retention_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.retention_task
        if self.router is not None:
            await run_in_threadpool(self.router.stop)
        if self.session:
            await self.session.close()
        if self.local_models is not None and hasattr(self.local_models, "close"):
            self.local_models.close()
        await run_in_threadpool(self.call_log.close)
        self.store.close()

    # -- helpers ------------------------------------------------------------------------------
    def authenticate(self, request: Request) -> Caller | Response:
        caller = self.keys.authenticate(request.headers.get("authorization"))
        if caller is None:
            return _error(401, "Invalid or missing protege API key. Pass `Authorization: Bearer pk-...`; "
                          "an admin creates keys with `protege keys create`.", "authentication_error", "invalid_api_key")
        return caller

    def log_call(self, record: CallRecord) -> None:
        """Complete, price, scrub and spool the call; if any of that fails, a placeholder is logged instead."""
        try:
            record = self._prepare_for_log(record)
        except Exception as e:  # e.g. JSON nested deeper than the scrubber's serialiser allows
            log.exception("Could not prepare call %s for the log; logging a placeholder instead", record.id)
            record = unloggable(record, e)
        self.call_log.log(record)
        self.metrics.requests.labels(str(record.status), record.served_by or "none").inc()
        if record.latency_ms is not None:
            self.metrics.latency.labels(record.served_by or "none").observe(record.latency_ms / 1000)

    def _prepare_for_log(self, record: CallRecord) -> CallRecord:
        fill_derived_fields(record)
        if record.served_by and record.served_by.startswith("upstream:"):
            record.cost_usd = self.prices.cost(
                record.upstream_model or record.requested_model, record.prompt_tokens, record.completion_tokens
            )
            if record.cost_usd:
                self.metrics.cost.labels(record.upstream_model or record.requested_model).inc(record.cost_usd)
        elif record.served_by:  # a local model or specialist: the serving machine's time
            record.cost_usd = local_cost(record.latency_ms, self.settings.routing.local_usd_per_hour)
        return self.scrubber.scrub_record(record) if self.scrubber is not None else record

    def upstream_headers(self, upstream: UpstreamConfig, request: Request, caller: Caller) -> dict[str, str]:
        """The caller's headers minus hop-by-hop ones and protege's own, with the upstream's key."""
        headers = {k: v for k, v in request.headers.items() if k not in DROP_HEADERS and not k.startswith("x-protege-")}
        key = upstream.api_key
        if key:
            headers["authorization"] = f"Bearer {key}"
        elif caller.name is None and "authorization" in request.headers:
            headers["authorization"] = request.headers["authorization"]  # open mode: pass the caller's key on
        return headers

    @staticmethod
    def upstream_url(upstream: UpstreamConfig, path: str, headers: dict[str, str]) -> URL:
        """The upstream's URL for `path`; credentials in its base URL travel as Basic auth (unless a key is set),
        never in messages."""
        url = URL(upstream.base_url + path)
        if url.user is not None and "authorization" not in headers:
            headers["authorization"] = aiohttp.BasicAuth(url.user, url.password or "").encode()
        return url.with_user(None)

    async def send_upstream(self, upstream: UpstreamConfig, body: bytes, headers: dict) -> aiohttp.ClientResponse:
        """POST to the upstream, retrying connection errors and 429/502/503/504 with backoff."""
        assert self.session is not None
        url = self.upstream_url(upstream, "/chat/completions", headers)
        retries = self.settings.gateway.retries
        for attempt in range(retries + 1):
            try:
                resp = await self.session.post(url, data=body, headers=headers)
            except (aiohttp.ClientConnectionError, OSError, asyncio.TimeoutError) as e:
                # Only failures to connect are retried: a read timeout means the upstream got the request.
                if not isinstance(e, (aiohttp.ClientConnectorError, aiohttp.ConnectionTimeoutError)) or attempt == retries:
                    raise self._unavailable(upstream, e) from e
            else:
                if resp.status not in RETRY_STATUSES or attempt == retries:
                    return resp
                delay = _retry_after(resp.headers.get("retry-after"))
                resp.release()
                self.metrics.retries.inc()
                await asyncio.sleep(delay if delay is not None else 0.25 * 2**attempt)
                continue
            self.metrics.retries.inc()
            await asyncio.sleep(0.25 * 2**attempt)
        raise AssertionError("unreachable")

    def _unavailable(self, upstream: UpstreamConfig, e: BaseException) -> UpstreamUnavailable:
        if isinstance(e, (asyncio.TimeoutError, aiohttp.ServerTimeoutError)):
            return UpstreamUnavailable(
                504, f"Upstream {upstream.name!r} ({upstream.display_url}) did not answer within "
                f"{self.settings.gateway.timeout_s:g} s. Raise [gateway] timeout_s in protege.toml if it is just slow.",
                "upstream_timeout",
            )
        return UpstreamUnavailable(
            502, f"Cannot reach upstream {upstream.name!r} at {upstream.display_url}: "
            f"{redact_credentials(str(e)) or type(e).__name__}. "
            "Check that it is running and that --upstream / protege.toml point at it.", "upstream_unreachable",
        )


def _retry_after(value: str | None) -> float | None:
    try:
        return min(float(value), 8.0) if value else None
    except ValueError:
        return None


def _upstream_error_message(body: Any, status: int) -> str:
    if isinstance(body, dict) and isinstance(body.get("error"), dict):
        return str(body["error"].get("message") or body["error"])
    return f"upstream returned HTTP {status}"


def _local_model_error(e: Exception, model: str) -> Response:
    """A local model's error for the caller. Server-side failures (a missing or corrupt file) are logged here
    and answered without their detail, which names server paths."""
    status = getattr(e, "status", 500)
    if status < 500:
        return _error(status, str(e), "local_model_error", getattr(e, "code", None), "model")
    log.error("Local model %r failed: %s", model, e)
    return _error(status, f"The local model {model!r} is unavailable on this server; its operator finds the reason "
                  "in the gateway's log.", "server_error", getattr(e, "code", None), "model")


async def _read_body(request: Request, limit: int) -> bytes | Response:
    """The request body, or a 413 as soon as it is known to exceed `limit` bytes (never read whole)."""
    declared = request.headers.get("content-length", "")
    size, parts = 0, []
    if not (declared.isdigit() and int(declared) > limit):
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                break
            parts.append(chunk)
        else:
            return b"".join(parts)
    return _error(413, f"The request body is larger than this gateway's limit of {limit:,} bytes. Send a smaller "
                  "request, or have the operator raise [gateway] max_request_bytes in protege.toml.",
                  code="request_too_large")


def _json_depth(value: Any) -> int:
    """How deeply arrays and objects nest in `value` (a scalar is 0), level by level, without recursion."""
    depth, level = 0, [value]
    while containers := [c for c in level if isinstance(c, (dict, list))]:
        depth += 1
        level = [v for c in containers for v in (c.values() if isinstance(c, dict) else c)]
    return depth


def _local_limits_error(pool: Any, body: dict) -> Response | None:
    """A 400 when a local model is asked for more tokens than its context holds (it would decode for minutes)."""
    base = body["model"].partition(":")[0]
    context = pool.catalog.get(base).context_length or LOCAL_CONTEXT
    for key in ("max_tokens", "max_completion_tokens"):
        value = body.get(key)
        if value is not None and (type(value) is not int or not 1 <= value <= context):
            return _error(400, f"'{key}' must be an integer from 1 to {context:,} (the context length of {base}).",
                          param=key, code="invalid_value")
    return None


def _parse_request(raw: bytes) -> dict | Response:
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as e:
        return _error(400, f"The request body is not valid JSON ({e}). Send a JSON chat completions request.")
    if not isinstance(body, dict):
        return _error(400, "The request body must be a JSON object.")
    if _json_depth(body) > MAX_JSON_DEPTH:
        return _error(400, f"The request body nests arrays and objects more than {MAX_JSON_DEPTH} levels deep; "
                      "flatten it.", code="json_too_deep")
    if body.get("stream") not in (None, True, False):
        return _error(400, "'stream' must be true or false.", param="stream", code="invalid_type")
    n = body.get("n", 1)
    if n is not None and (type(n) is not int or not 1 <= n <= MAX_N):
        return _error(400, f"'n' must be an integer from 1 to {MAX_N}.", param="n", code="invalid_value")
    if not isinstance(body.get("model"), str) or not body["model"]:
        return _error(400, "Missing required parameter: 'model' (a string).", param="model", code="missing_required_parameter")
    msgs = body.get("messages")
    if not isinstance(msgs, list) or not msgs or not all(isinstance(m, dict) for m in msgs):
        return _error(400, "'messages' must be a non-empty array of message objects.", param="messages")
    return body


async def chat_completions(request: Request) -> Response:
    gw: Gateway = request.app.state.gateway
    started = time.time()
    t0 = time.perf_counter()
    caller = gw.authenticate(request)
    if isinstance(caller, Response):
        return caller
    raw = await _read_body(request, gw.settings.gateway.max_request_bytes)
    if isinstance(raw, Response):
        return raw
    body = _parse_request(raw)
    if isinstance(body, Response):
        return body
    workload = request.headers.get(WORKLOAD_HEADER)
    record = CallRecord(id=new_call_id(), ts=started, request=body, source="gateway", workload=workload, client=caller.name)
    model = body["model"]

    if gw.local_models is not None and gw.local_models.serves(model.partition(":")[0]):
        try:  # may load the model on first use: off the event loop
            runtime = await run_in_threadpool(gw.local_models.resolve, model)
        except Exception as e:  # a bad or missing adapter (the caller's to fix) or a broken model file (ours)
            return _local_model_error(e, model)
        if runtime is not None:
            return _local_limits_error(gw.local_models, body) or await _serve_locally(gw, runtime, body, record, t0)

    upstream = gw.settings.upstream_for(model)
    if upstream is None:
        return _error(404, f"No upstream serves model {model!r}. Add one with --upstream URL or an [[upstreams]] entry "
                      "whose models match it in protege.toml.", code="model_not_found", param="model")
    scope = call_scope(workload_of(body, workload), caller.name)  # whose logged answers it may be given
    decision = gw.router.decide(body, request.headers, record.id, scope) if gw.router is not None else None
    if decision is not None:
        record.task_id = decision.task_id
        record.metadata["route"] = decision.metadata()
        if decision.serve:
            served = await _try_specialist(gw, decision, body, record, t0)
            if served is not None:
                return served
    record.served_by = f"upstream:{upstream.name}"
    try:
        resp = await gw.send_upstream(upstream, raw, gw.upstream_headers(upstream, request, caller))
    except UpstreamUnavailable as e:
        record.status, record.error, record.latency_ms = e.status, e.message, (time.perf_counter() - t0) * 1000
        gw.log_call(record)
        return _error(e.status, e.message, "upstream_error", e.code)

    if body.get("stream") and resp.status == 200 and resp.content_type == "text/event-stream":
        return StreamingResponse(
            _relay_stream(gw, resp, record, t0, decision),
            media_type=resp.headers.get("content-type", "text/event-stream"),
            headers=_route_headers(record) | {"cache-control": "no-cache"},
        )
    try:
        payload = await resp.read()
    except (aiohttp.ClientError, asyncio.TimeoutError) as e:
        err = gw._unavailable(upstream, e)
        record.status, record.error = err.status, err.message
        record.latency_ms = (time.perf_counter() - t0) * 1000
        gw.log_call(record)
        return _error(err.status, err.message, "upstream_error", err.code)
    finally:
        resp.release()
    record.latency_ms = record.ttft_ms = (time.perf_counter() - t0) * 1000
    record.status = resp.status
    try:
        parsed = orjson.loads(payload)
    except orjson.JSONDecodeError:
        parsed = None
    if resp.status == 200 and isinstance(parsed, dict):
        record.response = parsed
    else:
        record.metadata["upstream_body"] = parsed if parsed is not None else payload[:2000].decode(errors="replace")
        record.error = _upstream_error_message(parsed, resp.status) if resp.status != 200 else "upstream sent a non-JSON body"
    gw.log_call(record)  # on disk before the caller sees the answer
    if decision is not None and decision.shadow and record.response is not None:
        gw.router.shadow(decision, body, record.id, record.response)
    return Response(payload, resp.status, media_type=resp.headers.get("content-type", "application/json"),
                    headers=_route_headers(record))


def _route_headers(record: CallRecord) -> dict[str, str]:
    """Who answered: the call id, `x-protege-served-by`, and `x-protege-fallback` with the reason when the
    specialist's answer was not served."""
    headers = {"x-protege-call-id": record.id, "x-protege-served-by": record.served_by or "none"}
    route = record.metadata.get("route")
    if route:
        headers["x-protege-task"] = route.get("task") or ""
        if route.get("fallback"):
            headers["x-protege-fallback"] = route.get("fallback_reason") or "yes"
    return headers


async def _try_specialist(gw: Gateway, decision: RouteDecision, body: dict, record: CallRecord,
                          t0: float) -> Response | None:
    """Answer with the task's specialist; None (and the reason in the log) when the LLM must answer."""
    assert gw.router is not None
    got = await run_in_threadpool(gw.router.answer, decision, body)
    route = record.metadata["route"]
    route["confidence"] = None if got.confidence is None else round(got.confidence, 4)
    route["specialist_latency_ms"] = round(got.latency_ms, 2)
    if not got.ok:
        route["fallback"], route["fallback_reason"], route["fallback_detail"] = True, got.fallback_reason, got.error
        gw.metrics.fallbacks.labels(decision.task_id or "", got.fallback_reason or "").inc()
        return None
    response = got.completion
    response["model"] = f"{decision.specialist.responder.model_name}:{decision.task_id}"
    record.served_by = f"specialist:{decision.task_id}"
    record.response = response
    record.latency_ms = record.ttft_ms = (time.perf_counter() - t0) * 1000
    gw.log_call(record)
    headers = _route_headers(record)
    if body.get("stream"):
        return StreamingResponse(_as_sse(response), media_type="text/event-stream", headers=headers)
    return Response(orjson.dumps(response), 200, media_type="application/json", headers=headers)


async def _relay_stream(gw: Gateway, resp: aiohttp.ClientResponse, record: CallRecord, t0: float,
                        decision: RouteDecision | None = None):
    """Pass SSE bytes through as they arrive; log the reassembled response before the final `[DONE]`."""
    parts: list[bytes] = []
    logged = False

    def finish(error: str | None = None, status: int = 200) -> None:
        nonlocal logged
        if logged:
            return
        logged = True
        raw = b"".join(parts)
        record.response = reassemble_chat_stream(iter_sse_data(raw))
        record.latency_ms = (time.perf_counter() - t0) * 1000
        record.status, record.error = status, error
        if record.response.get("error") and error is None:
            record.status, record.error = 502, _upstream_error_message(record.response, 502)
        gw.log_call(record)
        if decision is not None and decision.shadow and record.is_success:
            gw.router.shadow(decision, record.request, record.id, record.response)

    events = SSEEvents()
    try:
        async for chunk in resp.content.iter_any():
            if record.ttft_ms is None:
                record.ttft_ms = (time.perf_counter() - t0) * 1000
            parts.append(chunk)
            if b"[DONE]" in events.feed(chunk):
                finish()  # logged before the caller sees the end of the stream
            yield chunk
        if not logged:
            raise aiohttp.ClientPayloadError("the upstream closed the stream before `data: [DONE]`, so the answer "
                                             "is incomplete; retry the call")
    except (aiohttp.ClientError, asyncio.TimeoutError) as e:
        message = f"The upstream stream broke off: {e or type(e).__name__}"
        finish(message, 502)
        yield b"data: " + orjson.dumps(error_body(message, "upstream_error", "upstream_stream_error")) + b"\n\n"
    except (asyncio.CancelledError, GeneratorExit):
        finish("The caller disconnected before the stream ended.", 499)
        raise
    finally:
        resp.release()


async def _serve_locally(gw: Gateway, runtime: Any, body: dict, record: CallRecord, t0: float) -> Response:
    """Answer with a local model or specialist (the runtime decides how); a stream sends each token as it is
    decoded. A full queue answers 429 with `Retry-After` at once."""
    record.served_by = f"local:{body['model']}"
    headers = {"x-protege-call-id": record.id}
    try:
        if body.get("stream"):
            chunks = _LocalChunks(runtime.stream(body))
            first = await run_in_threadpool(chunks.next)  # admission and request checks happen here
        else:
            response = await run_in_threadpool(runtime.complete, body)
    except Exception as e:  # the runtime's own errors carry an HTTP status and a code
        record.status, record.error = getattr(e, "status", 500), str(e)
        record.latency_ms = (time.perf_counter() - t0) * 1000
        gw.log_call(record)
        return _runtime_error(e, record.id)
    if body.get("stream"):
        return StreamingResponse(_local_stream(gw, chunks, first, record, t0), media_type="text/event-stream",
                                 headers=headers | {"cache-control": "no-cache"})
    record.response = response
    record.latency_ms = record.ttft_ms = (time.perf_counter() - t0) * 1000
    gw.log_call(record)
    return Response(orjson.dumps(response), 200, media_type="application/json", headers=headers)


class _LocalChunks:
    """A local runtime's stream, read chunk by chunk in worker threads and closable from the event loop."""

    def __init__(self, chunks: Any):
        self._chunks, self._lock, self._closed = chunks, threading.Lock(), False

    def next(self) -> dict | None:
        with self._lock:
            return None if self._closed else next(self._chunks, None)

    def close(self) -> None:
        """Stop the stream (waits for a chunk being read): the runtime frees the request's decode slot."""
        self._closed = True
        with self._lock:
            self._chunks.close()


async def _local_stream(gw: Gateway, chunks: _LocalChunks, first: dict, record: CallRecord, t0: float):
    """Relay a local runtime's chunks as SSE while they are decoded; log the reassembled call before `[DONE]`."""
    sent = [first]
    yield b"data: " + orjson.dumps(first) + b"\n\n"
    status, error = 200, None
    try:
        while (chunk := await run_in_threadpool(chunks.next)) is not None:
            if record.ttft_ms is None and any(c.get("delta", {}).get("content") or c.get("delta", {}).get("tool_calls")
                                              for c in chunk.get("choices", ())):
                record.ttft_ms = (time.perf_counter() - t0) * 1000
            sent.append(chunk)
            yield b"data: " + orjson.dumps(chunk) + b"\n\n"
    except (asyncio.CancelledError, GeneratorExit):
        status, error = 499, "The caller disconnected before the stream ended."
        raise
    except Exception as e:  # e.g. constrained output that failed mid-stream
        status, error = getattr(e, "status", 500), str(e)
        yield b"data: " + orjson.dumps(error_body(error, "local_model_error", getattr(e, "code", None))) + b"\n\n"
    finally:
        asyncio.get_running_loop().run_in_executor(None, chunks.close)  # not awaited: the caller may be gone
        record.response = reassemble_chat_stream(sent)
        record.latency_ms = (time.perf_counter() - t0) * 1000
        record.status, record.error = status, error
        gw.log_call(record)
    yield b"data: [DONE]\n\n"


async def _as_sse(response: dict):
    """A finished completion replayed as one chunk per choice, for callers that asked to stream."""
    for choice in response.get("choices", []):
        delta = dict(choice.get("message") or {})
        if delta.get("tool_calls"):
            delta["tool_calls"] = [dict(tc, index=i) for i, tc in enumerate(delta["tool_calls"])]
        chunk = {k: response.get(k) for k in ("id", "created", "model")}
        chunk |= {"object": "chat.completion.chunk",
                  "choices": [{"index": choice.get("index", 0), "delta": delta, "finish_reason": choice.get("finish_reason")}]}
        yield b"data: " + orjson.dumps(chunk) + b"\n\n"
    if response.get("usage"):
        yield b"data: " + orjson.dumps({"id": response.get("id"), "object": "chat.completion.chunk", "choices": [],
                                        "usage": response["usage"]}) + b"\n\n"
    yield b"data: [DONE]\n\n"


async def list_models(request: Request) -> Response:
    gw: Gateway = request.app.state.gateway
    caller = gw.authenticate(request)
    if isinstance(caller, Response):
        return caller
    models: dict[str, dict] = {}
    for upstream in gw.settings.upstreams:
        with contextlib.suppress(Exception):
            headers = gw.upstream_headers(upstream, request, caller)
            async with gw.session.get(gw.upstream_url(upstream, "/models", headers), headers=headers,
                                      timeout=aiohttp.ClientTimeout(total=5)) as resp:
                if resp.status == 200:
                    for m in (await resp.json()).get("data", []):
                        models.setdefault(m.get("id"), m | {"owned_by": m.get("owned_by") or upstream.name})
    if gw.local_models is not None:
        for mid in gw.local_models.model_ids():
            models.setdefault(mid, {"id": mid, "object": "model", "created": 0, "owned_by": "protege-local"})
    return JSONResponse({"object": "list", "data": list(models.values())})


async def health(request: Request) -> Response:
    gw: Gateway = request.app.state.gateway
    return JSONResponse({
        "status": "ok", "worker": os.getpid(), "open_mode": gw.keys.is_open, "log_backlog": gw.call_log.backlog,
        "spool_errors": gw.call_log.spool_errors, "upstreams": [u.name for u in gw.settings.upstreams],
        "routing": gw.router.describe() if gw.router is not None else None,
        "local_queues": gw.local_models.queues() if hasattr(gw.local_models, "queues") else None,
    })


async def metrics(request: Request) -> Response:
    gw: Gateway = request.app.state.gateway
    return Response(gw.metrics.render(), media_type="text/plain; version=0.0.4")


def _admin(request: Request, *, query_key: bool = False) -> Gateway | Response:
    """The gateway if the caller is an admin. With `query_key`, `?key=` may stand in for the Authorization
    header, so a browser can open the dashboard (the key then shows in its history: see docs/report.md)."""
    gw: Gateway = request.app.state.gateway
    key = request.query_params.get("key") if query_key else None
    caller = gw.keys.authenticate(f"Bearer {key}") if key else gw.authenticate(request)
    if caller is None:
        return _error(401, "Invalid protege API key in ?key=; an admin creates one with `protege keys create --role admin`.",
                      "authentication_error", "invalid_api_key")
    if isinstance(caller, Response):
        return caller
    if not caller.is_admin:
        return _error(403, "Reading logs needs an admin key (`protege keys create --role admin`).", "permission_error")
    return gw


class BadParameter(ValueError):
    def __init__(self, name: str, message: str):
        super().__init__(message)
        self.name = name

    def response(self) -> Response:
        return _error(400, str(self), param=self.name, code="invalid_parameter")


MAX_UNIX_TIME = 1e11
MAX_CALLS_PAGE = 1000
MAX_REPORT_HOURS = 24 * 366 * 100


def _query_number(request: Request, name: str, low: float, high: float, *, integer: bool = False) -> float | None:
    """A finite number from the query string within [low, high], None when absent; BadParameter otherwise."""
    raw = request.query_params.get(name)
    if raw is None:
        return None
    kind = "an integer" if integer else "a number"
    try:
        value = int(raw) if integer else float(raw)
    except ValueError:
        value = None
    if value is None or not math.isfinite(value) or not low <= value <= high:
        raise BadParameter(name, f"Query parameter {name!r} must be {kind} from {low:g} to {high:g}; "
                           f"got {raw[:40]!r}.")
    return value


def _filter_from_query(request: Request) -> CallFilter:
    q = request.query_params
    since, until = (_query_number(request, k, 0, MAX_UNIX_TIME) for k in ("since", "until"))
    return CallFilter(workload=q.get("workload"), since=since, until=until, model=q.get("model"),
                      source=q.get("source"), task_id=q.get("task_id"))


async def admin_calls(request: Request) -> Response:
    gw = _admin(request)
    if isinstance(gw, Response):
        return gw
    try:
        flt = _filter_from_query(request)
        limit = int(_query_number(request, "limit", 1, MAX_CALLS_PAGE, integer=True) or 50)
    except BadParameter as e:
        return e.response()
    records = await run_in_threadpool(lambda: list(gw.store.iter_calls(flt, limit=limit, newest_first=True)))
    return Response(orjson.dumps({"object": "list", "data": [r.to_dict() for r in records]}), media_type="application/json")


async def admin_call(request: Request) -> Response:
    gw = _admin(request)
    if isinstance(gw, Response):
        return gw
    record = await run_in_threadpool(gw.store.get_call, request.path_params["call_id"])
    if record is None:
        return _error(404, f"No call with id {request.path_params['call_id']!r}.", code="not_found")
    return Response(orjson.dumps(record.to_dict()), media_type="application/json")


async def admin_stats(request: Request) -> Response:
    gw = _admin(request)
    if isinstance(gw, Response):
        return gw
    try:
        flt = _filter_from_query(request)
    except BadParameter as e:
        return e.response()
    return JSONResponse(await run_in_threadpool(gw.store.stats, flt))


async def _savings_report(request: Request, *, query_key: bool = False) -> dict | Response:
    """`build_report` for the window in the query (`hours=N`, or Unix `since`/`until`), off the event loop."""
    from protege.report.savings import build_report

    gw = _admin(request, query_key=query_key)
    if isinstance(gw, Response):
        return gw
    try:
        hours = _query_number(request, "hours", 0, MAX_REPORT_HOURS)
        since = time.time() - 3600 * hours if hours is not None else _query_number(request, "since", 0, MAX_UNIX_TIME)
        until = _query_number(request, "until", 0, MAX_UNIX_TIME)
        buckets = int(_query_number(request, "buckets", 1, 500, integer=True) or 24)
    except BadParameter as e:
        return e.response()
    return await run_in_threadpool(build_report, gw.store, since, until, buckets)


async def savings_report(request: Request) -> Response:
    report = await _savings_report(request)
    return report if isinstance(report, Response) else Response(orjson.dumps(report), media_type="application/json")


async def dashboard(request: Request) -> Response:
    from protege.report.savings import render_html

    report = await _savings_report(request, query_key=True)
    if isinstance(report, Response):
        return report
    return Response(render_html(report), media_type="text/html; charset=utf-8",
                    headers={"Cache-Control": "no-store", "Referrer-Policy": "no-referrer"})


async def _http_error(request: Request, exc: HTTPException) -> Response:
    """Starlette's own 404/405s, in OpenAI's error shape instead of plain text."""
    if exc.status_code == 405:
        allowed = (exc.headers or {}).get("Allow", "")
        return _error(405, f"{request.method} is not allowed on {request.url.path}; use {allowed or 'another method'}.",
                      code="method_not_allowed")
    if exc.status_code == 404:
        return _error(404, f"No such endpoint: {request.url.path}. The gateway serves /v1/chat/completions, /v1/models, "
                      "/health, /metrics and the admin routes under /v1/protege/.", code="not_found")
    return _error(exc.status_code, str(exc.detail), code=str(exc.status_code))


async def _internal_error(request: Request, exc: Exception) -> Response:
    log.exception("Internal error on %s %s", request.method, request.url.path)
    return _error(500, "protege failed on this request; the gateway's log has the details. Please report it.",
                  "server_error", "internal_error")


def create_app(settings: Settings, *, store: Store | None = None, local_models: Any = None) -> Starlette:
    """The gateway as an ASGI app. Opening the store and the spool happens at start-up, not here."""

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette):
        gw = Gateway(settings, store=store, local_models=local_models)
        app.state.gateway = gw
        await gw.start()
        try:
            yield
        finally:
            await gw.stop()

    routes = [
        Route("/v1/chat/completions", chat_completions, methods=["POST"]),
        Route("/chat/completions", chat_completions, methods=["POST"]),
        Route("/v1/models", list_models, methods=["GET"]),
        Route("/health", health, methods=["GET"]),
        Route("/metrics", metrics, methods=["GET"]),
        Route("/v1/protege/calls", admin_calls, methods=["GET"]),
        Route("/v1/protege/calls/{call_id}", admin_call, methods=["GET"]),
        Route("/v1/protege/stats", admin_stats, methods=["GET"]),
        Route("/v1/protege/report", savings_report, methods=["GET"]),
        Route("/dashboard", dashboard, methods=["GET"]),
    ]
    return Starlette(routes=routes, lifespan=lifespan,
                     exception_handlers={HTTPException: _http_error, Exception: _internal_error})


SETTINGS_ENV = "PROTEGE_SERVE_SETTINGS"
LOCAL_ENV = "PROTEGE_SERVE_LOCAL"


def app_from_env() -> Starlette:
    """Factory for multi-worker uvicorn (each worker calls it): settings come as JSON in $PROTEGE_SERVE_SETTINGS,
    and $PROTEGE_SERVE_LOCAL=1 makes the worker serve local models and specialists (`serve --local`)."""
    settings = Settings.model_validate_json(os.environ[SETTINGS_ENV])
    local_models = local_models_for(settings) if os.environ.get(LOCAL_ENV) == "1" else None
    return create_app(settings, local_models=local_models)


def local_models_for(settings: Settings) -> Any:
    """What answers local models and specialists ([serving]): llama.cpp in this process, or one vLLM server."""
    serving = settings.serving
    if serving.backend == "vllm":
        from protege.models.engine import EnginePool

        key = os.environ.get(serving.engine_api_key_env) if serving.engine_api_key_env else None
        return EnginePool(serving.engine_url, serving.engine_base, serving.engine_model, key)
    from protege.models.serving import LocalModelPool

    return LocalModelPool(llama_options=serving.runtime_options())
