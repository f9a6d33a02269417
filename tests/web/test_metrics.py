"""``GET /metrics``: Prometheus text with the request rate and latency per route, queue depths, the
outbox backlog, WeChat errors by code and the rollups' age; summed over processes under gunicorn."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from fakewechat import fake_openid
from yijing import jobs
from yijing.extensions import db
from yijing.models import User
from yijing.services import outbox

ROOT = Path(__file__).resolve().parents[2]


def scrape(client) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:  # type: ignore[no-untyped-def]
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response.mimetype == "text/plain"
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(response.get_data(as_text=True))
        for sample in family.samples
    }


def value(samples, name: str, **labels: str) -> float:  # type: ignore[no-untyped-def]
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def test_requests_are_counted_and_timed_per_route(client):
    before = scrape(client)
    for _ in range(3):
        assert client.get("/healthz").status_code == 200
    assert client.get("/api/v1/tasks/999999").status_code == 401
    assert client.get("/no/such/page").status_code == 404
    after = scrape(client)

    def delta(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert delta("yijing_http_requests_total", method="GET", route="/healthz", status="200") == 3
    assert (
        delta("yijing_http_requests_total", method="GET", route="/api/v1/tasks/<int:task_id>", status="401")
        == 1
    )
    assert delta("yijing_http_requests_total", method="GET", route="unmatched", status="404") == 1
    assert delta("yijing_http_request_duration_seconds_count", route="/healthz") == 3
    assert delta("yijing_http_request_duration_seconds_bucket", route="/healthz", le="+Inf") == 3
    # The scrape itself is not counted.
    assert delta("yijing_http_requests_total", method="GET", route="/metrics", status="200") == 0


def test_queues_outbox_wechat_errors_and_rollup_age(app, client, fake_wechat):
    from workers import reports as report_jobs
    from yijing.extensions import wechat

    with app.app_context():
        user = User(kind="wechat", openid=fake_openid("resident"), display_name="resident")
        db.session.add(user)
        db.session.commit()
        for n in range(2):
            outbox.notify(user.id, "message.replied", title=f"回复 {n}", dedupe_key=f"m:{n}", data={})
        db.session.commit()  # two pending rows, and their delivery jobs queued on ``notify``
        fake_wechat.state.fail("/wxa/msg_sec_check", errcode=45009, times=2)
        for _ in range(2):
            with pytest.raises(Exception):  # noqa: B017 - the gateway's own error type
                wechat().msg_sec_check("openid-1", "hello", 2)
        report_jobs.refresh_recent()
        notify_queued = jobs.get_queue(jobs.NOTIFY).count
        db.session.remove()

    samples = scrape(client)
    assert notify_queued > 0
    assert value(samples, "yijing_queue_jobs", queue="notify", state="queued") == notify_queued
    assert value(samples, "yijing_queue_jobs", queue="dispatch", state="queued") == 0
    assert value(samples, "yijing_outbox_backlog", status="pending") == 2
    assert value(samples, "yijing_outbox_backlog", status="failed") == 0
    assert value(samples, "yijing_outbox_oldest_pending_seconds") >= 0
    assert value(samples, "yijing_wechat_errors_total", code="45009") == 2
    assert 0 <= value(samples, "yijing_rollup_age_seconds") < 60
    assert value(samples, "yijing_metrics_source_up", source="database") == 1
    assert value(samples, "yijing_metrics_source_up", source="redis") == 1


SCRIPT = textwrap.dedent(
    """
    import sys
    from yijing import create_app
    from yijing.config import Config

    app = create_app(Config.from_env())
    client = app.test_client()
    if sys.argv[1] == "serve":
        for _ in range(int(sys.argv[2])):
            assert client.get("/healthz").status_code == 200
    else:
        sys.stdout.write(client.get("/metrics").get_data(as_text=True))
    """
)


def test_counts_from_every_worker_process_are_summed(app, tmp_path):
    """Under gunicorn each worker is a process: with PROMETHEUS_MULTIPROC_DIR the scrape sums them."""
    config = app.config["YIJING"]
    env = {
        **os.environ,
        "PROMETHEUS_MULTIPROC_DIR": str(tmp_path),
        "YIJING_ENV": "test",
        "DATABASE_URL": config.database_url,
        "REDIS_URL": config.redis_url,
        "REDIS_PREFIX": config.redis_prefix,
        "QUEUE_PREFIX": config.queue_prefix,
        "WECHAT_API_BASE_URL": config.wechat_api_base_url,
        "LOG_LEVEL": "WARNING",
    }
    workers = [
        subprocess.Popen([sys.executable, "-c", SCRIPT, "serve", str(n)], env=env, cwd=ROOT) for n in (2, 5)
    ]
    assert [w.wait(timeout=120) for w in workers] == [0, 0]
    scraped = subprocess.run(
        [sys.executable, "-c", SCRIPT, "scrape"],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert scraped.returncode == 0, scraped.stderr
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(scraped.stdout)
        for s in family.samples
    }
    assert value(samples, "yijing_http_requests_total", method="GET", route="/healthz", status="200") == 7
    assert value(samples, "yijing_http_request_duration_seconds_count", route="/healthz") == 7
