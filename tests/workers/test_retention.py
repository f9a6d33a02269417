"""The retention schedule (issue 13): data aged past each limit is removed by the daily job, what is
younger is untouched, and the figures that depend on it do not change."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import func, select, update

from tests.fixtures.tasks import TASK_PLACE


def _now() -> datetime:
    return datetime.now(UTC)


def _patrol(client, tasks, desk, headers, title: str) -> tuple[int, int]:
    task = tasks.create(desk, title=title, points=10)
    accepted = tasks.accept(headers, task["id"])
    tasks.check_in(headers, task["id"], accuracy=10)
    stored = tasks.post(
        headers,
        task["id"],
        "track",
        {"points": [{"lat": TASK_PLACE[0], "lng": TASK_PLACE[1], "recorded_at": _now().isoformat()}]},
    )
    assert stored.status_code in (200, 201), stored.get_json()
    tasks.set_rows("Assignment", accepted["id"], checkin_at=_now() - timedelta(minutes=30))
    assert tasks.check_out(headers, task["id"])["status"] == "completed"
    return task["id"], accepted["id"]


def test_the_daily_job_removes_what_is_past_each_limit_and_nothing_younger(
    app, client, volunteers, tasks, staff, report_clue, upload_image, wechat_login, id_number
):
    from workers import privacy
    from yijing.extensions import db
    from yijing.models import (
        Assignment,
        AuditEntry,
        Clue,
        CluePhoto,
        IdempotencyRecord,
        Media,
        Notification,
        TrackPoint,
        Volunteer,
    )
    from yijing.services import points

    config = app.config["YIJING"]
    desk = staff("desk-kdl", "desk", "150203")
    headers, volunteer = volunteers.approved(desk, "old-hand")
    user_id = client.get("/api/v1/me", headers=headers).get_json()["id"]
    volunteers.on_duty(headers, *TASK_PLACE)
    old_task, old_assignment = _patrol(client, tasks, desk, headers, "九十天前的巡逻")
    _, new_assignment = _patrol(client, tasks, desk, headers, "昨天的巡逻")
    tasks.set_rows("Task", old_task, ends_at=_now() - timedelta(days=config.retain_track_days, hours=1))

    # Clue photos: one clue closed past the limit, one closed recently.
    clue_ids = []
    for _ in range(2):
        photo = upload_image(headers).get_json()["id"]
        clue_id = report_clue(headers, photos=[photo]).get_json()["id"]
        moved = client.post(
            f"/api/v1/desk/clues/{clue_id}/transitions", json={"to": "rejected"}, headers=desk
        )
        assert moved.status_code == 200, moved.get_json()
        clue_ids.append(clue_id)
    old_clue, new_clue = clue_ids
    tasks.set_rows(
        "Clue", old_clue, closed_at=_now() - timedelta(days=config.retain_clue_photo_days, hours=1)
    )

    # Applications: one rejected past the limit, one rejected recently, one approved long ago.
    rejected = []
    for name in ("late", "recent"):
        _, body = volunteers.apply(name, id_number=id_number(seq=500 + len(rejected)))
        decided = client.post(
            f"/api/v1/desk/volunteers/{body['id']}/review",
            json={"decision": "reject", "reason": "材料不全"},
            headers=desk,
        )
        assert decided.status_code == 200, decided.get_json()
        rejected.append(body["id"])
    long_ago = _now() - timedelta(days=config.retain_closed_application_days + 1)
    tasks.set_rows("Volunteer", rejected[0], updated_at=long_ago, decided_at=long_ago)
    tasks.set_rows("Volunteer", volunteer["id"], updated_at=long_ago, decided_at=long_ago)

    with app.app_context():
        # Audit entries, notifications and stored answers of various ages.
        audit_old = AuditEntry(action="x.old", target_type="t", target_id="1", data={})
        audit_kept = AuditEntry(action="x.kept", target_type="t", target_id="1", data={})
        db.session.add_all([audit_old, audit_kept])
        db.session.flush()
        db.session.execute(
            update(AuditEntry)
            .where(AuditEntry.id == audit_old.id)
            .values(created_at=_now() - timedelta(days=config.retain_audit_days + 1))
        )
        db.session.execute(
            update(AuditEntry)
            .where(AuditEntry.id == audit_kept.id)
            .values(created_at=_now() - timedelta(days=200))
        )
        rows = db.session.scalars(select(Notification).where(Notification.user_id == user_id)).all()
        assert len(rows) >= 3
        old_note, sealed_note, young_note = rows[0], rows[1], rows[2]
        db.session.execute(
            update(Notification)
            .where(Notification.id == old_note.id)
            .values(status="sent", created_at=_now() - timedelta(days=config.retain_notification_days + 1))
        )
        db.session.execute(
            update(Notification)
            .where(Notification.id == sealed_note.id)
            .values(
                status="inbox_only",
                sealed=True,
                last_attempt_at=_now() - timedelta(days=config.retain_sealed_notification_days + 1),
            )
        )
        db.session.execute(update(Notification).where(Notification.id == young_note.id).values(status="sent"))
        db.session.add_all(
            [
                IdempotencyRecord(
                    scope="user:1",
                    key="old",
                    endpoint="POST /x",
                    request_hash="h",
                    created_at=_now() - timedelta(hours=config.retain_idempotency_hours + 1),
                ),
                IdempotencyRecord(scope="user:1", key="new", endpoint="POST /x", request_hash="h"),
            ]
        )
        db.session.commit()
        ids = {"old_note": old_note.id, "sealed_note": sealed_note.id, "young_note": young_note.id}
        balance = points.balance(user_id)
        minutes = dict(db.session.execute(select(Assignment.id, Assignment.service_minutes)).all())
        photo_counts = dict(db.session.execute(select(Clue.id, Clue.photo_count)).all())
        db.session.remove()

    from workers.schedule import PERIODIC_JOBS

    assert any(j.func is privacy.enforce_retention and j.interval == 86400 for j in PERIODIC_JOBS)
    with app.app_context():
        removed = privacy.enforce_retention()
        again = privacy.enforce_retention()
        db.session.remove()
    assert removed == {
        "track_points": 1,
        "clue_photos": 1,
        "closed_applications": 1,
        "notifications": 2,
        "idempotency_records": 1,
        "audit_entries": 1,
    }
    assert set(again.values()) == {0}  # idempotent

    with app.app_context():
        tracks = db.session.execute(
            select(TrackPoint.assignment_id, func.count()).group_by(TrackPoint.assignment_id)
        )
        assert dict(tracks.all()) == {new_assignment: 1}
        old_a, new_a = db.session.get(Assignment, old_assignment), db.session.get(Assignment, new_assignment)
        assert old_a.checkin_lat is None and new_a.checkin_lat is not None
        photos = db.session.scalars(select(CluePhoto.clue_id)).all()
        assert photos == [new_clue]
        assert db.session.scalar(select(func.count()).select_from(Media)) == 1
        late, recent = db.session.get(Volunteer, rejected[0]), db.session.get(Volunteer, rejected[1])
        assert late.real_name_enc == "" and late.pii_erased_at is not None and late.id_number_hash
        assert recent.real_name_enc and recent.pii_erased_at is None
        approved = db.session.get(Volunteer, volunteer["id"])
        assert approved.real_name_enc and approved.pii_erased_at is None  # an open application stays
        kept = {a.action for a in db.session.scalars(select(AuditEntry))}
        assert "x.kept" in kept and "x.old" not in kept and "retention.enforce" in kept
        notes = set(db.session.scalars(select(Notification.id)).all())
        assert ids["old_note"] not in notes and ids["sealed_note"] not in notes and ids["young_note"] in notes
        assert db.session.scalars(select(IdempotencyRecord.key)).all() == ["new"]
        # What depends on the removed data is unchanged.
        assert points.balance(user_id) == balance
        assert dict(db.session.execute(select(Assignment.id, Assignment.service_minutes)).all()) == minutes
        assert dict(db.session.execute(select(Clue.id, Clue.photo_count)).all()) == photo_counts
        db.session.remove()
    history = client.get(f"/api/v1/desk/volunteers/{volunteer['id']}/tasks", headers=desk)
    assert history.status_code == 200
    assert client.get(f"/api/v1/clues/{old_clue}", headers=headers).get_json()["photos"] == []
    assert len(client.get(f"/api/v1/clues/{new_clue}", headers=headers).get_json()["photos"]) == 1
