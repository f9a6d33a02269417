"""Each subscribe message carries the data its template shows.

The flows below run through HTTP (and the jobs the app runs), so the outbox rows hold exactly what the
services write. Every row of a kind that has a template is then rendered against it: a field that falls
to its template default (the "-" and "已更新" a reporter saw), a time that falls back to the moment of
writing where the template names the event's own time, a value that is empty once fitted, or a page
other than the one the template names, fails the test.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import select

from yijing.wechat.templates import _EMPTY, TIME_TYPES, Template, fit

PLACE = (40.6525, 109.8330)


def _lookup(root: dict[str, Any], source: str) -> Any:
    current: Any = root
    for part in source.split("."):
        if not isinstance(current, dict) or part not in current:
            return None
        current = current[part]
    return current


def _present(value: Any) -> bool:
    return value is not None and str(value).strip() != ""


def problems(template: Template, row: Any) -> list[str]:
    """What the row's message would show wrongly (empty when every field carries its data)."""
    root = {"title": row.title, "body": row.body, "data": row.data or {}, "created_at": row.created_at}
    found: list[str] = []
    for spec in template.fields:
        if spec.value is not None:
            continue
        source = next((s for s in spec.sources if _present(_lookup(root, s))), None)
        if source is None:
            found.append(f"{spec.name}: no data, shows the default {spec.default!r}")
            continue
        if spec.type in TIME_TYPES and source == "created_at" and spec.sources[0] != "created_at":
            found.append(f"{spec.name}: the time of writing instead of {spec.sources[0]}")
        shown = fit(spec.type, _lookup(root, source))
        if spec.type not in TIME_TYPES and shown == _EMPTY.get(spec.type):
            found.append(f"{spec.name}: {source} is empty once fitted to a {spec.type}")
    if template.page and row.page and row.page.split("?")[0] != template.page:
        found.append(f"page {row.page!r} is not the template's {template.page!r}")
    return found


def _check_every_row(app) -> set[str]:
    from yijing.extensions import db
    from yijing.models import Notification

    registry = app.config["YIJING"].wechat_templates
    wrong: dict[str, list[str]] = {}
    kinds: set[str] = set()
    with app.app_context():
        for row in db.session.scalars(select(Notification).order_by(Notification.id)):
            template = registry.for_kind(row.kind)
            if template is None:
                continue  # inbox only (staff, team captain, Q&A published)
            kinds.add(row.kind)
            found = problems(template, row)
            if found:
                wrong[f"#{row.id} {row.kind}"] = found
        db.session.remove()
    assert not wrong, wrong
    return kinds


def test_the_checker_catches_what_reached_wechat_as_defaults(app):
    """The clue message as it was written before: number and status fell to "-" and "已更新"."""
    from types import SimpleNamespace

    template = app.config["YIJING"].wechat_templates.for_kind("clue_status")
    old = SimpleNamespace(
        title="线索进展：已受理",
        body="已受理",
        data={"clue_id": 7, "status": "accepted"},
        created_at=datetime.now(UTC),
        page="pages/clues/detail?id=7",
    )
    found = problems(template, old)
    assert any("character_string1" in p for p in found) and any("phrase2" in p for p in found)
    assert any("page" in p for p in found)


def test_volunteer_task_clue_message_and_feed_kinds_carry_their_data(
    app, client, tree, staff, volunteers, tasks, wechat_login, report_clue, run_jobs
):
    from workers import tasks as task_jobs

    desk = staff("desk-city", "desk", "150200")

    # Volunteers: approved, rejected, suspended, reinstated.
    near, near_body = volunteers.approved(desk, "near", jurisdiction_id=tree["150203-01-01"])
    other, _ = volunteers.approved(desk, "other", jurisdiction_id=tree["150203-01-01"])
    _, refused = volunteers.apply("refused", jurisdiction_id=tree["150203-01-01"])
    review = {"decision": "reject", "reason": "材料不全，请补充"}
    assert (
        client.post(f"/api/v1/desk/volunteers/{refused['id']}/review", json=review, headers=desk).status_code
        == 200
    )
    vid = near_body["id"]
    for action, reason in (("suspend", "多次无故缺岗"), ("reinstate", "已说明情况")):
        response = client.post(
            f"/api/v1/desk/volunteers/{vid}/{action}", json={"reason": reason}, headers=desk
        )
        assert response.status_code == 200, response.get_json()

    # Tasks: nearby invitations (urgent), filled, a reminder before the start, a cancellation.
    volunteers.on_duty(near, PLACE[0] + 0.002, PLACE[1])
    volunteers.on_duty(other, PLACE[0] + 0.003, PLACE[1])
    urgent = tasks.create(desk, dispatch_mode="nearby", kind="missing_person", title="寻找走失老人", slots=1)
    run_jobs("dispatch")
    tasks.accept(near, urgent["id"])  # the last slot: the other invitee is told it is filled
    soon = datetime.now(UTC) + timedelta(minutes=30)
    later = tasks.create(desk, title="夜间巡逻", starts_at=soon, ends_at=soon + timedelta(hours=2))
    tasks.accept(other, later["id"])
    with app.app_context():
        assert task_jobs.send_reminders() >= 1
    cancelled = client.post(
        f"/api/v1/desk/tasks/{later['id']}/cancel", json={"reason": "天气原因取消"}, headers=desk
    )
    assert cancelled.status_code == 200, cancelled.get_json()

    # Clues: received, status changed, a question; a named and an anonymous reporter.
    reporter = wechat_login("reporter")
    named = report_clue(reporter).get_json()
    anonymous = report_clue(wechat_login("shy"), anonymous=True).get_json()
    for clue in (named, anonymous):
        moved = client.post(
            f"/api/v1/desk/clues/{clue['id']}/transitions",
            json={"to": "accepted", "public_note": "已安排民警核查"},
            headers=desk,
        )
        assert moved.status_code == 200, moved.get_json()
        asked = client.post(
            f"/api/v1/desk/clues/{clue['id']}/messages", json={"body": "请问大概是几点？"}, headers=desk
        )
        assert asked.status_code in (200, 201), asked.get_json()

    # A message answered; an alert pushed to the district; a comment hidden by the desk.
    resident = wechat_login("resident")
    client.put("/api/v1/me/district", json={"district_id": tree["150203"]}, headers=resident)
    message = client.post("/api/v1/messages", json={"body": "小区门口路灯坏了，晚上很黑"}, headers=resident)
    assert message.status_code == 201, message.get_json()
    replied = client.post(
        f"/api/v1/desk/messages/{message.get_json()['id']}/replies",
        json={"body": "已联系物业维修"},
        headers=desk,
    )
    assert replied.status_code in (200, 201), replied.get_json()
    alert = client.post(
        "/api/v1/desk/posts",
        json={"kind": "alert", "title": "暴雨预警", "body": "请勿外出", "jurisdiction_id": tree["150203"]},
        headers=desk,
    ).get_json()
    assert (
        client.post(
            f"/api/v1/desk/posts/{alert['id']}/publish", json={"push": True}, headers=desk
        ).status_code
        == 200
    )
    comment = client.post(f"/api/v1/feed/{alert['id']}/comments", json={"body": "收到"}, headers=resident)
    run_jobs()
    hidden = client.post(
        f"/api/v1/desk/comments/{comment.get_json()['id']}/hide",
        json={"reason": "含有个人隐私信息"},
        headers=desk,
    )
    assert hidden.status_code == 200, hidden.get_json()

    kinds = _check_every_row(app)
    assert {
        "volunteer.approve",
        "volunteer.reject",
        "volunteer.suspend",
        "volunteer.reinstate",
        "task.invitation",
        "task.filled",
        "task.reminder",
        "task.cancelled",
        "clue_received",
        "clue_status",
        "clue_question",
        "message.reply",
        "feed.alert",
        "comment.hide",
    } <= kinds, kinds
