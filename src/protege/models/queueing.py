"""`ServingQueue`: admission control for one local model, so no request waits unbounded.

A local model decodes `slots` requests at once (1 for a single llama.cpp context, more with
batched decoding); at most `max_queue` more may wait for a slot. One more is refused at once
with `QueueFullError` (the gateway answers 429 with `Retry-After`). `estimated_wait_s` says how
long a request arriving now would wait for a slot, from the requests ahead of it and the
recent time a request holds a slot; the router compares it with `[routing] max_queue_wait_s`
and sends the call to the LLM instead (`x-protege-fallback: queue`).
"""

from __future__ import annotations

import math
import threading
import time

from protege.models.errors import QueueFullError

INITIAL_SERVICE_S = 1.0
"""Assumed time a request holds a slot until the first one has been measured."""
SMOOTHING = 0.2
"""Weight of the newest measured service time in the running estimate."""


class Ticket:
    """One admitted request: `start` when it gets a slot, `release` when it is done (idempotent)."""

    __slots__ = ("_queue", "_released", "_started")

    def __init__(self, queue: "ServingQueue"):
        self._queue, self._released = queue, False
        self._started: float | None = None

    def start(self) -> None:
        self._queue._start(self)
        self._started = time.perf_counter()

    def release(self) -> None:
        if not self._released:
            self._released = True
            self._queue._release(self._started)


class ServingQueue:
    """Counts the requests decoding and waiting on one model, and refuses the one too many."""

    def __init__(self, model: str, slots: int = 1, max_queue: int = 64):
        if slots < 1 or max_queue < 0:
            raise ValueError(f"slots must be >= 1 and max_queue >= 0 (got {slots}, {max_queue}); "
                             "fix [serving] parallel / max_queue in protege.toml")
        self.model, self.slots, self.max_queue = model, slots, max_queue
        self.waiting = 0
        self.running = 0
        self.service_s: float | None = None
        """Running estimate of how long a request holds a slot (None until one finished)."""
        self.refused = 0
        self._lock = threading.Lock()

    def admit(self) -> Ticket:
        """A ticket for a new request, or `QueueFullError` when `max_queue` requests already wait."""
        with self._lock:
            if self.running + self.waiting >= self.slots + self.max_queue:
                self.refused += 1
                retry = max(1, math.ceil(self._wait_locked()))
                raise QueueFullError(
                    f"{self.model} is busy: {self.waiting} requests already wait for it (the limit is [serving] "
                    f"max_queue = {self.max_queue}). Retry after {retry} s, or send the call to the LLM.", retry)
            self.waiting += 1
        return Ticket(self)

    def estimated_wait_s(self) -> float:
        """How long a request admitted now would wait for a slot (0 when one is free)."""
        with self._lock:
            return self._wait_locked()

    def _wait_locked(self) -> float:
        ahead = self.running + self.waiting - self.slots + 1
        if ahead <= 0:
            return 0.0
        return ahead / self.slots * (self.service_s if self.service_s is not None else INITIAL_SERVICE_S)

    def _start(self, ticket: Ticket) -> None:
        with self._lock:
            self.waiting -= 1
            self.running += 1

    def _release(self, started: float | None) -> None:
        with self._lock:
            if started is None:
                self.waiting -= 1
                return
            self.running -= 1
            took = time.perf_counter() - started
            self.service_s = took if self.service_s is None else (1 - SMOOTHING) * self.service_s + SMOOTHING * took

    def describe(self) -> dict:
        with self._lock:
            return {"slots": self.slots, "running": self.running, "waiting": self.waiting, "max_queue": self.max_queue,
                    "service_s": None if self.service_s is None else round(self.service_s, 3), "refused": self.refused}
