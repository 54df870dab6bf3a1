"""Prometheus metrics of one gateway app (its own registry, so several apps can share a process)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)


class GatewayMetrics:
    def __init__(self, call_log=None):
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "protege_requests", "Chat completion requests answered", ["status", "served_by"], registry=self.registry
        )
        self.latency = Histogram(
            "protege_request_latency_seconds", "End-to-end latency of chat completions", ["served_by"],
            buckets=LATENCY_BUCKETS, registry=self.registry,
        )
        self.retries = Counter("protege_upstream_retries", "Upstream attempts retried", registry=self.registry)
        self.fallbacks = Counter("protege_fallbacks", "Calls a specialist was asked to answer that went to the LLM",
                                 ["task", "reason"], registry=self.registry)
        self.cost = Counter("protege_cost_usd", "Spend on upstream LLMs, USD", ["model"], registry=self.registry)
        if call_log is not None:
            Gauge("protege_log_backlog", "Calls accepted but not yet in the store", registry=self.registry).set_function(
                lambda: call_log.backlog
            )
            Gauge("protege_spool_errors", "Spool writes that failed (disk full?)", registry=self.registry).set_function(
                lambda: call_log.spool_errors
            )

    def render(self) -> bytes:
        return generate_latest(self.registry)
