"""Prometheus metrics of one app (its own registry, so several apps in one process do not mix)."""
from __future__ import annotations

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest


class Metrics:
    """Requests and errors by route and status, latency histograms, batch sizes, queue depths, readiness."""

    def __init__(self):
        r = self.registry = CollectorRegistry()
        self.requests = Counter("mrmkg_http_requests", "HTTP requests answered", ["path", "method", "status"], registry=r)
        self.errors = Counter("mrmkg_http_errors", "HTTP requests answered with status >= 400", ["path", "status"],
                              registry=r)
        self.latency = Histogram("mrmkg_http_request_seconds", "Seconds from request to response", ["path"], registry=r,
                                 buckets=(.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30))
        self.batch = Histogram("mrmkg_batch_size", "Requests per Pipeline call", ["kind"], registry=r,
                               buckets=(1, 2, 4, 8, 16, 32, 64, 128))
        self.batch_seconds = Histogram("mrmkg_batch_seconds", "Seconds per Pipeline call", ["kind"], registry=r,
                                       buckets=(.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30))
        self.queue = Gauge("mrmkg_queue_depth", "Requests waiting for a batch", ["kind"], registry=r)
        self.ready = Gauge("mrmkg_model_ready", "1 when the model is loaded", registry=r)

    def observe_request(self, path: str, method: str, status: int, seconds: float) -> None:
        self.requests.labels(path, method, str(status)).inc()
        if status >= 400:
            self.errors.labels(path, str(status)).inc()
        self.latency.labels(path).observe(seconds)

    def observe_batch(self, kind: str, size: int, seconds: float) -> None:
        self.batch.labels(kind).observe(size)
        self.batch_seconds.labels(kind).observe(seconds)

    def render(self, queues: dict[str, int]) -> tuple[bytes, str]:
        for kind, depth in queues.items():
            self.queue.labels(kind).set(depth)
        return generate_latest(self.registry), CONTENT_TYPE_LATEST
