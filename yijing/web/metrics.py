"""``GET /metrics`` in Prometheus' text format, so an operator sees trouble before residents do.

Per process, summed over gunicorn's workers (prometheus_client's multiprocess mode, on when
``PROMETHEUS_MULTIPROC_DIR`` is set — ``deploy/gunicorn.conf.py`` sets it):

- ``yijing_http_requests_total{method,route,status}`` — the request rate (``rate()`` of it);
- ``yijing_http_request_duration_seconds{route}`` — a latency histogram per route (the URL rule,
  e.g. ``/api/v1/tasks/<int:task_id>``, so ids do not multiply the series).

Cluster-wide, read from PostgreSQL and Redis at scrape time (every app host answers the same; scrape
one, or use ``max by``):

- ``yijing_queue_jobs{queue,state}`` — RQ jobs queued, started, scheduled and failed per queue;
- ``yijing_outbox_backlog{status}`` — notification rows pending and failed, and
  ``yijing_outbox_oldest_pending_seconds``;
- ``yijing_wechat_errors_total{code}`` — WeChat API failures by errcode (``http`` for an HTTP
  error or a network failure), counted in Redis by every app and worker host;
- ``yijing_rollup_age_seconds`` — time since the report rollups were last recomputed;
- ``yijing_metrics_source_up{source}`` — 0 when the database or Redis did not answer the scrape.

The load balancer does not pass ``/metrics`` through (``deploy/haproxy.cfg``): Prometheus scrapes
the app hosts directly.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Iterator

from flask import Blueprint, Flask, Response, g, request
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
    multiprocess,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from redis.exceptions import RedisError
from sqlalchemy import func, select
from sqlalchemy.exc import SQLAlchemyError

from yijing.extensions import db, limiter, redis_client, redis_key
from yijing.telemetry import ROLLUP_AT_KEY, WECHAT_ERRORS_KEY

log = logging.getLogger(__name__)

REQUESTS = Counter(
    "yijing_http_requests", "HTTP requests answered, by route and status.", ["method", "route", "status"]
)
LATENCY = Histogram(
    "yijing_http_request_duration_seconds",
    "Time to answer an HTTP request, by route.",
    ["route"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
)

bp = Blueprint("metrics", __name__)


class ClusterCollector(Collector):
    """Queue depths, the outbox backlog, WeChat errors and the rollups' age, read at scrape time."""

    def collect(self) -> Iterator[Metric]:
        up = GaugeMetricFamily(
            "yijing_metrics_source_up", "1 if the source answered this scrape.", labels=["source"]
        )
        try:
            yield from self._from_redis()
            up.add_metric(["redis"], 1)
        except RedisError as exc:
            log.warning("metrics: Redis did not answer", extra={"error": type(exc).__name__})
            up.add_metric(["redis"], 0)
        try:
            yield from self._from_database()
            up.add_metric(["database"], 1)
        except SQLAlchemyError as exc:
            db.session.rollback()
            log.warning("metrics: the database did not answer", extra={"error": type(exc).__name__})
            up.add_metric(["database"], 0)
        yield up

    def _from_redis(self) -> Iterator[Metric]:
        from rq import Queue

        from yijing import jobs

        client = redis_client()
        depth = GaugeMetricFamily(
            "yijing_queue_jobs", "RQ jobs per queue and state.", labels=["queue", "state"]
        )
        for name in jobs.ALL:
            queue = Queue(jobs.queue_name(name), connection=client)
            depth.add_metric([name, "queued"], queue.count)
            depth.add_metric([name, "started"], queue.started_job_registry.count)
            depth.add_metric([name, "scheduled"], queue.scheduled_job_registry.count)
            depth.add_metric([name, "failed"], queue.failed_job_registry.count)
        errors = CounterMetricFamily(
            "yijing_wechat_errors", "WeChat API failures by errcode (http: no answer).", labels=["code"]
        )
        for code, count in sorted(client.hgetall(redis_key(*WECHAT_ERRORS_KEY)).items()):
            errors.add_metric([code.decode()], int(count))
        rolled = client.get(redis_key(*ROLLUP_AT_KEY))
        yield depth
        yield errors
        if rolled is not None:
            yield GaugeMetricFamily(
                "yijing_rollup_age_seconds",
                "Seconds since the report rollups were last recomputed.",
                value=max(0.0, time.time() - float(rolled)),
            )

    def _from_database(self) -> Iterator[Metric]:
        from yijing.models import Notification, NotificationStatus
        from yijing.models.base import utcnow

        backlog = GaugeMetricFamily(
            "yijing_outbox_backlog", "Notification rows not yet settled, by status.", labels=["status"]
        )
        open_statuses = (NotificationStatus.PENDING, NotificationStatus.FAILED)
        counts = dict(
            db.session.execute(
                select(Notification.status, func.count())
                .where(Notification.status.in_(open_statuses))
                .group_by(Notification.status)
            ).all()
        )
        oldest = db.session.scalar(
            select(func.min(Notification.created_at)).where(Notification.status == NotificationStatus.PENDING)
        )
        db.session.rollback()
        for status in open_statuses:
            backlog.add_metric([status.value], counts.get(status.value, 0))
        yield backlog
        age = 0.0 if oldest is None else max(0.0, (utcnow() - oldest).total_seconds())
        yield GaugeMetricFamily(
            "yijing_outbox_oldest_pending_seconds", "Age of the oldest pending notification row.", value=age
        )


def _process_registry() -> CollectorRegistry:
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        return registry
    return REGISTRY


@bp.get("/metrics")
@limiter.exempt
def metrics() -> Response:
    """Prometheus metrics: this host's requests, and the cluster's queues, outbox and errors."""
    cluster = CollectorRegistry(auto_describe=False)
    cluster.register(ClusterCollector())
    body = generate_latest(_process_registry()) + generate_latest(cluster)
    return Response(body, mimetype=CONTENT_TYPE_LATEST)


def init_metrics(app: Flask) -> None:
    app.register_blueprint(bp)

    # The start time is the access log's (yijing.web.request_log): one before-request hook for both.
    # Each labelled series is looked up once (``labels()`` takes a lock and builds its key per call).
    latency: dict[str, Histogram] = {}
    requests: dict[tuple[str, str, int], Counter] = {}

    @app.after_request
    def _answered(response: Response) -> Response:
        started = g.get("request_started")
        if started is not None and request.endpoint != "metrics.metrics":
            route = request.url_rule.rule if request.url_rule is not None else "unmatched"
            histogram = latency.get(route)
            if histogram is None:
                histogram = latency[route] = LATENCY.labels(route)
            histogram.observe(time.perf_counter() - started)
            key = (request.method, route, response.status_code)
            counter = requests.get(key)
            if counter is None:
                counter = requests[key] = REQUESTS.labels(key[0], route, str(key[2]))
            counter.inc()
        return response
