"""Prometheus metrics of one app instance (its own registry: no process-global state, so tests and several
apps in one process do not mix their counts). With `--workers N` each worker process reports its own."""
from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 10.0, 30.0)


class ServiceMetrics:
    def __init__(self):
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = Counter("maskgate_requests", "HTTP requests answered", ["endpoint", "method", "status"],
                                registry=r)
        self.latency = Histogram("maskgate_request_seconds", "Time to answer a request", ["endpoint"],
                                 buckets=LATENCY_BUCKETS, registry=r)
        self.faces = Counter("maskgate_faces", "Faces classified, by mask state", ["mask"], registry=r)
        self.errors = Counter("maskgate_errors", "Requests refused or failed, by kind", ["kind"], registry=r)
        self.inflight = Gauge("maskgate_predictions_in_flight", "Predictions running or queued", registry=r)
        self.ready = Gauge("maskgate_model_ready", "1 when the model is loaded", registry=r)

    def render(self) -> bytes:
        return generate_latest(self.registry)
