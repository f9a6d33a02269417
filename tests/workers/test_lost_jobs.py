"""Every job kind has a way back when its job is lost (Redis flushed or down at the enqueue, a worker
killed). The other kinds are proven beside their subject:

| job | recovery | test |
|---|---|---|
| notifications.deliver | ``notifications.sweep`` | test_notification_delivery, test_worker_crash |
| broadcasts.fan_out | ``notifications.sweep`` revives stalled fan-outs | desk/test_broadcasts |
| clues.check_content, match_duplicates | ``clues.sweep`` | workers/test_clues |
| comments.check_comment | ``comments.sweep_pending_comments`` | miniprogram_api/test_comments |
| feed.broadcast_alert | ``feed.publish_due`` requests it again | desk/test_feed |
| tasks.advance_dispatch | ``tasks.sweep_dispatches`` | desk/test_task_dispatch |
| tasks.generate_occurrences(series) | the periodic run over every series | here |
| reports.build_export | ``reports.sweep_exports`` | here |
"""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import update


def _lose_every_job(app) -> None:
    from yijing.extensions import redis_client

    with app.app_context():
        keys = redis_client().keys("rq:*")
        if keys:
            redis_client().delete(*keys)


def test_a_lost_export_job_is_enqueued_again_by_the_sweeper(app, client, staff, run_jobs):
    from workers import reports as report_jobs
    from yijing.extensions import db
    from yijing.models import ReportExport
    from yijing.models.base import utcnow
    from yijing.services import exports

    leader = staff("leader-kdl", "leader", "150203")
    made = client.post("/api/v1/desk/exports", json={"kind": "coverage"}, headers=leader).get_json()
    _lose_every_job(app)
    run_jobs()
    assert client.get(f"/api/v1/desk/exports/{made['id']}", headers=leader).get_json()["status"] == "queued"

    with app.app_context():
        assert report_jobs.sweep_exports() == 0  # too recent: its job may still be waiting
        later = utcnow() + exports.QUEUED_GRACE + timedelta(seconds=1)
        specs = exports.unfinished_jobs(now=later)
        assert [s.args for s in specs] == [(made["id"],)]
        for spec in specs:
            from yijing import jobs

            jobs.enqueue(spec)
    run_jobs("reports")
    done = client.get(f"/api/v1/desk/exports/{made['id']}", headers=leader).get_json()
    assert done["status"] == "done"
    file = client.get(f"/api/v1/desk/exports/{made['id']}/file", headers=leader)
    assert file.status_code == 200
    file.close()

    # A worker that died while building leaves the export running: after the job's timeout it is built again.
    with app.app_context():
        db.session.execute(update(ReportExport).values(status="running", file_path=None))
        db.session.commit()
        long_after = utcnow() + timedelta(seconds=exports.BUILD_TIMEOUT) + exports.QUEUED_GRACE
        assert exports.unfinished_jobs(now=utcnow()) == []
        [spec] = exports.unfinished_jobs(now=long_after + timedelta(seconds=1))
        from yijing import jobs

        jobs.enqueue(spec)
        db.session.remove()
    run_jobs("reports")
    assert client.get(f"/api/v1/desk/exports/{made['id']}", headers=leader).get_json()["status"] == "done"


def test_the_export_sweeper_is_a_periodic_job():
    from workers import reports as report_jobs
    from workers import schedule

    assert report_jobs.sweep_exports in [entry.func for entry in schedule.PERIODIC_JOBS]


def test_a_lost_series_job_is_made_good_by_the_periodic_run(app, client, tasks, staff):
    from workers import tasks as task_jobs
    from yijing.models.base import utcnow

    desk = staff("desk-kdl", "desk", "150203")
    body = tasks.body(title="友谊小学早间护校", kind="campus_guard", slots=2)
    for key in ("starts_at", "ends_at", "dispatch_mode", "publish"):
        body.pop(key)
    today = utcnow().date()
    body.update(
        weekdays=[1, 2, 3, 4, 5, 6, 7], start_time="07:30", end_time="08:30", starts_on=today.isoformat()
    )
    created = client.post("/api/v1/desk/task-series", json=body, headers=desk)
    assert created.status_code == 201, created.get_json()
    series = created.get_json()
    _lose_every_job(app)
    tasks.run_jobs()
    board = client.get(f"/api/v1/desk/tasks?series_id={series['id']}", headers=desk).get_json()["items"]
    assert board == []  # its job is gone
    with app.app_context():
        assert task_jobs.generate_occurrences() > 0  # what the periodic job runs
    board = client.get(f"/api/v1/desk/tasks?series_id={series['id']}", headers=desk).get_json()["items"]
    assert len(board) >= 13
