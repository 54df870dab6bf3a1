"""The router: for each request, its task, the task's route, and the specialist's answer or a fallback.

The gateway asks `decide(request, headers, call_id)` on every chat completion bound for an
upstream. Human-facing calls (the header named by `[routing] human_facing_header`, or
`metadata.human_facing`) and calls that match no task go to the LLM. Otherwise the task's route
says: `off` → LLM; `shadow` → LLM serves, the specialist answers afterwards in a worker thread and
its answer is compared with the LLM's (`ShadowResult`, never served); `canary` → the specialist
answers a stable share of the calls (by call id); `on` → the specialist answers, except for an
audited sample (`[routing] audit_share`) that the LLM answers with the specialist in shadow, so
live quality drift stays measurable.

`answer` asks the specialist's `Responder` (any kind: answer reuse, classifier, LoRA with its
pruned prompt and constrained decoding) and says whether its output may be served: not when it has
no answer for the request (`no_match`: answer reuse never saw it in the caller's scope), decoding
failed, was cut off or (label tasks) is not one of the task's labels (`invalid_output`, or
`specialist_error` for anything else the runtime refused) or when its confidence is under the
route's calibrated threshold (`low_confidence`); nor is it asked when its local model would make the
call wait longer than `[routing] max_queue_wait_s` for a decode slot, or its queue is full
(`queue`); the gateway then asks the LLM, so the caller always gets an answer.

Routes, specialists and the task catalog are re-read by a background thread every
`[routing] refresh_s`: a promotion, demotion or new specialist takes effect without a restart
and without stalling requests (models and adapters load in that thread).
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from protege.cluster.catalog import TaskCatalog, default_catalog_path
from protege.config import Settings
from protege.evaluate.metrics import normalize_label
from protege.models.errors import InvalidOutputError, QueueFullError, RuntimeRequestError
from protege.models.serving import LocalModelPool
from protege.route.calibrate import Calibration
from protege.store.base import Route, ShadowResult, Store

log = logging.getLogger(__name__)

DEFAULT_MAX_TOKENS = 512
AGREEMENT = {"tool_call": 0.999, "json": 0.999, "label": 0.999, "text": 0.6}
"""Headline score at which a shadow answer counts as agreeing with the LLM's."""
MAX_PENDING_SHADOWS = 64


@dataclass
class ServedSpecialist:
    """A promoted specialist as the router serves it."""

    task_id: str
    folder: str
    responder: Any
    """Its `protege.train.kinds.Responder`."""
    kind: str
    output_kind: str
    max_tokens: int
    labels: frozenset[str] = frozenset()
    """For label tasks: the labels a served answer must be one of."""


@dataclass
class RouteDecision:
    task_id: str | None
    via: str
    mode: str | None = None
    serve: bool = False
    shadow: bool = False
    specialist: ServedSpecialist | None = None
    min_confidence: float | None = None
    human_facing: bool = False
    scope: str | None = None
    """Who asks (`protege.records.call_scope`): answer reuse stays inside it."""

    def metadata(self) -> dict:
        return {"task": self.task_id, "via": self.via, "mode": self.mode, "human_facing": self.human_facing,
                "specialist": self.specialist.folder if self.specialist else None,
                "kind": self.specialist.kind if self.specialist else None, "attempted": self.serve,
                "fallback": False, "fallback_reason": None, "confidence": None, "specialist_latency_ms": None}


@dataclass
class SpecialistAnswer:
    completion: dict | None
    confidence: float | None
    latency_ms: float
    fallback_reason: str | None = None
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.fallback_reason is None


@dataclass
class _State:
    version: tuple = ()
    assigner: Any = None
    routes: dict[str, Route] = field(default_factory=dict)
    specialists: dict[str, ServedSpecialist] = field(default_factory=dict)


def _truthy(value: Any) -> bool:
    return str(value).strip().lower() in ("1", "true", "yes", "on")


def _share(call_id: str) -> float:
    return int.from_bytes(hashlib.blake2b(call_id.encode(), digest_size=4).digest(), "big") / 2**32


class Router:
    """Routes requests to promoted specialists; reloads its routes in the background."""

    def __init__(self, store: Store, pool: LocalModelPool, settings: Settings, catalog_path: str | Path | None = None):
        self.store, self.pool, self.settings = store, pool, settings
        self.catalog_path = Path(catalog_path) if catalog_path else default_catalog_path()
        self.human_header = settings.routing.human_facing_header.lower()
        self._state = _State()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._shadows = ThreadPoolExecutor(max_workers=1, thread_name_prefix="protege-shadow")
        self._pending = 0
        self._pending_lock = threading.Lock()
        self.load_errors: dict[str, str] = {}
        self._last_error: str | None = None

    # -- lifecycle ------------------------------------------------------------------------------
    def start(self) -> None:
        self._refresh_logged()
        self._thread = threading.Thread(target=self._run, name="protege-router", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10)
        self._shadows.shutdown(wait=True)  # queued shadow comparisons finish (at most MAX_PENDING_SHADOWS)

    def _run(self) -> None:
        while not self._stop.wait(self.settings.routing.refresh_s):
            self._refresh_logged()

    def _refresh_logged(self) -> None:
        """`refresh`, where a failure (a broken catalog, an unreadable store) is logged once, never raised:
        the routes in force stay (at start: none, so every call goes to the LLM)."""
        try:
            self.refresh()
            self._last_error = None
        except Exception as exc:  # noqa: BLE001
            if str(exc) != self._last_error:
                log.error("loading routes failed (%s); the routes in force stay until this is fixed", exc)
            self._last_error = str(exc)

    def refresh(self) -> bool:
        """Re-read routes and the catalog if they changed; returns whether anything changed."""
        mtime = self.catalog_path.stat().st_mtime if self.catalog_path.exists() else 0.0
        version = (self.store.routes_version(), mtime)
        if version == self._state.version:
            return False
        old = self._state
        routes = self.store.routes()
        assigner = old.assigner if old.version and old.version[1] == mtime else self._load_assigner()
        specialists = {}
        for task_id, route in routes.items():
            if route.mode == "off" or not route.specialist:
                continue
            current = old.specialists.get(task_id)
            if current is not None and current.folder == route.specialist:
                specialists[task_id] = current
                continue
            try:
                specialists[task_id] = self._load_specialist(task_id, route.specialist)
                self.load_errors.pop(task_id, None)
            except Exception as exc:  # noqa: BLE001 - any failure: that task goes to the LLM, the rest still route
                self.load_errors[task_id] = str(exc)
                log.error("cannot serve the specialist of %s from %s (%s); its calls go to the LLM",
                          task_id, route.specialist, exc)
        self._state = _State(version, assigner, routes, specialists)
        for task_id, gone in old.specialists.items():
            if specialists.get(task_id) is not gone:  # demoted or replaced: its adapter is unloaded, after the
                try:                                  # shadow comparisons already queued for it (same worker)
                    self._shadows.submit(self._release, task_id, gone)
                except RuntimeError:  # stopping: no worker left
                    self._release(task_id, gone)
        log.info("routes loaded: %s", {t: r.mode for t, r in routes.items()} or "none")
        return True

    def _release(self, task_id: str, gone: ServedSpecialist) -> None:
        serving = self._state.specialists.get(task_id)
        if serving is not None and serving.folder == gone.folder:
            return  # promoted again meanwhile: the adapter it shares with the new one stays loaded
        try:
            gone.responder.release()
        except Exception as exc:  # noqa: BLE001 - a failed unload must not stop routing
            log.warning("could not release the specialist of %s from %s: %s", task_id, gone.folder, exc)

    def _load_assigner(self) -> Any:
        from protege.cluster.assign import TaskAssigner

        catalog = TaskCatalog.load(self.catalog_path)
        if not catalog.tasks:
            return None
        return TaskAssigner(catalog, embedder=False)

    def _load_specialist(self, task_id: str, folder: str) -> ServedSpecialist:
        from protege.train.kinds import open_specialist

        manifest, responder = open_specialist(folder, self.pool)
        cal = Calibration.load(folder)
        max_tokens = cal.max_tokens if cal is not None else DEFAULT_MAX_TOKENS
        labels = frozenset(cal.labels) if cal is not None else frozenset()
        return ServedSpecialist(task_id, folder, responder, manifest.get("kind", "lora"),
                                manifest.get("output_kind") or "text", max_tokens, labels)

    # -- per request ------------------------------------------------------------------------------
    def decide(self, request: dict, headers: Any, call_id: str, scope: str | None = None) -> RouteDecision | None:
        """None while there is no task catalog yet (nothing to route, nothing recorded). `scope`: who asks
        (`protege.records.call_scope` of the call's workload and key)."""
        state = self._state
        if state.assigner is None:
            return None
        meta = request.get("metadata") if isinstance(request.get("metadata"), dict) else {}
        if _truthy(headers.get(self.human_header, "")) or _truthy(meta.get("human_facing", "")):
            return RouteDecision(None, "human_facing", human_facing=True)
        assignment = state.assigner.explain(request, allow_embedding=False)
        decision = RouteDecision(assignment.task_id, assignment.via, scope=scope)
        route = state.routes.get(assignment.task_id) if assignment.task_id else None
        if route is None:
            return decision
        decision.mode = route.mode
        specialist = state.specialists.get(route.task_id)
        if route.mode == "off" or specialist is None:
            return decision
        decision.specialist, decision.min_confidence = specialist, route.min_confidence
        share = _share(call_id)
        if route.mode == "shadow" or (route.mode == "on" and share < self.settings.routing.audit_share):
            decision.shadow = True  # shadow mode, or an audited sample of a served task: drift shows here
        elif route.mode == "on" or (route.mode == "canary" and share < route.canary_share):
            decision.serve = True
        return decision

    def answer(self, decision: RouteDecision, request: dict) -> SpecialistAnswer:
        """The specialist's answer, or why it must not be served (blocking: call off the event loop)."""
        specialist = decision.specialist
        assert specialist is not None
        body = dict(request)
        body.pop("stream", None)
        body.pop("stream_options", None)
        asked = body.pop("max_completion_tokens", None) or body.get("max_tokens") or specialist.max_tokens
        body["max_tokens"] = min(int(asked), specialist.max_tokens)
        start = time.perf_counter()
        wait, budget = specialist.responder.queue_wait_s(), self.settings.routing.max_queue_wait_s
        if wait > budget:
            return SpecialistAnswer(None, None, 0.0, "queue", f"the specialist's model would make the call wait "
                                    f"{wait:.2f} s for a decode slot ([routing] max_queue_wait_s = {budget:g})")
        try:
            completion, confidence = specialist.responder.respond(body, decision.scope)
        except QueueFullError as exc:
            return SpecialistAnswer(None, None, (time.perf_counter() - start) * 1000, "queue", exc.message)
        except InvalidOutputError as exc:
            return SpecialistAnswer(None, None, (time.perf_counter() - start) * 1000, "invalid_output", exc.message)
        except RuntimeRequestError as exc:
            return SpecialistAnswer(None, None, (time.perf_counter() - start) * 1000, "specialist_error", exc.message)
        except Exception as exc:
            log.exception("the specialist of %s failed", decision.task_id)
            return SpecialistAnswer(None, None, (time.perf_counter() - start) * 1000, "specialist_error",
                                    f"{type(exc).__name__}: {exc}")
        latency = (time.perf_counter() - start) * 1000
        if completion is None:
            return SpecialistAnswer(None, None, latency, "no_match", "the specialist has no answer for this request")
        choice = completion["choices"][0]
        if choice["finish_reason"] == "length":
            return SpecialistAnswer(completion, confidence, latency, "invalid_output",
                                    f"cut off at {body['max_tokens']} tokens")
        if specialist.labels and normalize_label(choice["message"].get("content")) not in specialist.labels:
            return SpecialistAnswer(completion, confidence, latency, "invalid_output",
                                    f"{str(choice['message'].get('content'))[:40]!r} is not one of the task's labels")
        if decision.min_confidence is not None and (confidence or 0.0) < decision.min_confidence:
            return SpecialistAnswer(completion, confidence, latency, "low_confidence",
                                    f"confidence {confidence:.3f} < {decision.min_confidence:.3f}")
        return SpecialistAnswer(completion, confidence, latency)

    def shadow(self, decision: RouteDecision, request: dict, call_id: str, llm_response: dict) -> bool:
        """Queue a shadow comparison (dropped when the worker is this far behind); returns whether queued."""
        with self._pending_lock:
            if self._pending >= MAX_PENDING_SHADOWS or self._stop.is_set():
                return False
            self._pending += 1
        self._shadows.submit(self._compare, decision, request, call_id, llm_response)
        return True

    def _compare(self, decision: RouteDecision, request: dict, call_id: str, llm_response: dict) -> None:
        from protege.evaluate.harness import HEADLINE, Answer, score_answer
        from protege.specialist.examples import Example
        from protege.specialist.format import response_message

        try:
            specialist = decision.specialist
            assert specialist is not None
            reference = response_message(llm_response) or {}
            got = self.answer(RouteDecision(decision.task_id, decision.via, specialist=specialist,
                                            scope=decision.scope), request)
            if got.fallback_reason in ("no_match", "queue"):
                return  # nothing the specialist would have served, or it was busy: nothing to compare
            message = got.completion["choices"][0]["message"] if got.completion and got.fallback_reason is None else None
            kind = specialist.output_kind
            labels = {normalize_label(reference.get("content"))} if kind == "label" else set()
            scores, valid = score_answer(kind, Answer(message), Example(call_id, request, reference), labels)
            score = float(scores.get(HEADLINE[kind], 0.0))
            self.store.add_shadow_result(ShadowResult(
                call_id, specialist.task_id, agree=valid and score >= AGREEMENT[kind], score=score,
                valid=message is not None, confidence=got.confidence, latency_ms=round(got.latency_ms, 2),
                specialist=specialist.folder, answer=message))
        except Exception:
            log.exception("shadow comparison of call %s failed", call_id)
        finally:
            with self._pending_lock:
                self._pending -= 1

    def describe(self) -> dict:
        """What is being routed, for /health."""
        state = self._state
        return {"tasks_known": 0 if state.assigner is None else len(state.assigner.catalog.tasks),
                "routes": {t: r.mode for t, r in state.routes.items()},
                "serving": sorted(state.specialists), "load_errors": dict(self.load_errors),
                "shadow_pending": self._pending}
