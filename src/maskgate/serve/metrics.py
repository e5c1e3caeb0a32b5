"""Prometheus metrics of one app instance (its own registry: no process-global state, so tests and several
apps in one process do not mix their counts).

With `serve --workers N` every worker process is one instance, and a scrape reaches one of them at random;
so there (`PROMETHEUS_MULTIPROC_DIR` set before prometheus_client is imported, which `serve` does for the
workers it starts) each process writes its values to files in that folder and `/metrics`, whichever worker
answers, reports the service: counts summed over every worker that ever ran (a worker killed and replaced
keeps its counts), the in-flight gauge summed and `maskgate_model_ready` the lowest over the live workers."""
from __future__ import annotations

import glob
import os
import re

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest, values

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 10.0, 30.0)
MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"


def multiprocess_dir() -> str | None:
    """The shared folder when prometheus_client was imported in multi-process mode, else None. The mode is
    fixed at import (prometheus_client reads the variable then), so this asks what it chose, not the variable."""
    if values.ValueClass is values.MutexValue:
        return None
    return os.environ.get(MULTIPROC_ENV) or os.environ.get(MULTIPROC_ENV.lower())


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: alive
        return True
    return True


class ServiceMetrics:
    def __init__(self):
        self.shared_dir = multiprocess_dir()
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = Counter("maskgate_requests", "HTTP requests answered", ["endpoint", "method", "status"],
                                registry=r)
        self.latency = Histogram("maskgate_request_seconds", "Time to answer a request", ["endpoint"],
                                 buckets=LATENCY_BUCKETS, registry=r)
        self.faces = Counter("maskgate_faces", "Faces classified, by mask state", ["mask"], registry=r)
        self.errors = Counter("maskgate_errors", "Requests refused or failed, by kind", ["kind"], registry=r)
        self.inflight = Gauge("maskgate_predictions_in_flight", "Predictions running or queued", registry=r,
                              multiprocess_mode="livesum")
        self.ready = Gauge("maskgate_model_ready", "1 when the model is loaded (in every live worker)", registry=r,
                           multiprocess_mode="livemin")

    def render(self) -> bytes:
        if self.shared_dir is None:
            return generate_latest(self.registry)
        from prometheus_client.multiprocess import MultiProcessCollector, mark_process_dead

        # a killed worker never says so: drop its live gauges (its counters stay, they are the service's)
        for f in glob.glob(os.path.join(self.shared_dir, "gauge_live*_*.db")):
            m = re.search(r"_(\d+)\.db$", f)
            if m and not _alive(int(m.group(1))):
                mark_process_dead(int(m.group(1)), self.shared_dir)
        merged = CollectorRegistry()
        MultiProcessCollector(merged, self.shared_dir)
        return generate_latest(merged)
