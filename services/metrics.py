"""Prometheus metrics (`/metrics`, behind METRICS_TOKEN): what the database knows, read at scrape
time, plus HTTP latency measured in this process.

Generation and ledger counts come from the tables, so every replica reports the same totals (sum
them with `max`, not `sum`, across replicas); HTTP latency and the queue depth are per process.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from prometheus_client import CollectorRegistry, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from sqlalchemy import func
from sqlmodel import select

from models.generation import Generation
from models.ledger import Hold, LedgerEntry

LATENCY_WINDOW = timedelta(hours=1)
QUANTILES = (0.5, 0.9, 0.99)
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class StudioCollector:
    """Generations by status and engine, engine latency over the last hour, ledger operations by
    kind, open holds and (when given) the queue depth: one read-only query each per scrape."""

    def __init__(self, db, *, queue_depth: Callable[[], int | None] | None = None,
                 clock: Callable[[], datetime] | None = None):
        self.db = db
        self.queue_depth = queue_depth
        self.clock = clock or (lambda: datetime.now(UTC))

    def collect(self):
        G, L, H = Generation, LedgerEntry, Hold
        with self.db.session() as s:
            by_status = s.exec(select(G.status, G.engine, func.count()).group_by(G.status, G.engine)).all()
            since = self.clock() - LATENCY_WINDOW
            recent = s.exec(select(G.engine, G.timings).where(G.status == "succeeded", G.created_at >= since)).all()
            entries = s.exec(select(L.kind, func.count(), func.coalesce(func.sum(L.delta), 0))
                             .group_by(L.kind)).all()
            open_holds = s.exec(select(func.count()).select_from(H).where(H.status == "pending")).one()

        finished = CounterMetricFamily("studio_generations", "Finished generations, by status and engine.",
                                       labels=["status", "engine"])
        pending = GaugeMetricFamily("studio_generations_pending", "Generations in progress, by engine.",
                                    labels=["engine"])
        for status, engine, n in by_status:
            if status == "pending":
                pending.add_metric([engine], n)
            else:
                finished.add_metric([status, engine], n)
        yield finished
        yield pending

        latency = GaugeMetricFamily("studio_engine_latency_seconds",
                                    "Engine latency of the generations that succeeded in the last hour.",
                                    labels=["engine", "quantile"])
        samples = GaugeMetricFamily("studio_engine_latency_samples",
                                    "How many generations the engine latency quantiles are taken over.",
                                    labels=["engine"])
        per_engine: dict[str, list[float]] = {}
        for engine, timings in recent:
            ms = (timings or {}).get("engine_ms")
            if isinstance(ms, int | float):
                per_engine.setdefault(engine, []).append(ms / 1000)
        for engine, values in sorted(per_engine.items()):
            samples.add_metric([engine], len(values))
            for q in QUANTILES:
                latency.add_metric([engine, str(q)], _quantile(values, q))
        yield latency
        yield samples

        ops = CounterMetricFamily("studio_ledger_operations", "Ledger entries written, by kind.", labels=["kind"])
        credits = GaugeMetricFamily("studio_ledger_delta", "Sum of the ledger entries' effect on balances, "
                                    "by kind (grants positive, captures and expiries negative).", labels=["kind"])
        for kind, n, amount in entries:
            ops.add_metric([kind], n)
            credits.add_metric([kind], amount)
        yield ops
        yield credits
        yield GaugeMetricFamily("studio_holds_open", "Credit holds not yet captured or released.", value=open_holds)

        depth = self.queue_depth() if self.queue_depth else None
        if depth is not None:
            yield GaugeMetricFamily("studio_queue_depth", "Events waiting in this process's Gradio queue.",
                                    value=depth)


def _quantile(values: list[float], q: float) -> float:
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[round(q * 100) - 1]


class Metrics:
    """One registry per app (tests serve several apps in one process)."""

    def __init__(self, db, *, queue_depth: Callable[[], int | None] | None = None):
        self.registry = CollectorRegistry()
        self.registry.register(StudioCollector(db, queue_depth=queue_depth))
        self.http_latency = Histogram("studio_http_request_duration_seconds", "HTTP request latency.",
                                      ["method", "route", "status"], registry=self.registry)

    def observe_http(self, *, method: str, route: str, status: int, seconds: float) -> None:
        self.http_latency.labels(method, route, str(status)).observe(seconds)

    def exposition(self) -> bytes:
        return generate_latest(self.registry)
