"""Clue triage through HTTP: jurisdiction, anonymity, the state machine, assignment, duplicates,
points and canned replies."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select, update


def _rows(app, model, *where, order=None):
    from yijing.extensions import db

    with app.app_context():
        stmt = select(model).where(*where)
        if order is not None:
            stmt = stmt.order_by(order)
        rows = db.session.scalars(stmt).all()
        db.session.expunge_all()
        db.session.remove()
    return rows


def _user_id(client, headers) -> int:
    return client.get("/api/v1/me", headers=headers).get_json()["id"]


def _move(client, headers, clue_id, **body):
    return client.post(f"/api/v1/desk/clues/{clue_id}/transitions", json=body, headers=headers)


def _queue(client, headers, **params):
    response = client.get("/api/v1/desk/clues", query_string=params, headers=headers)
    assert response.status_code == 200, response.get_json()
    return response.get_json()


def test_an_anonymous_report_from_photo_to_valid_resolution(
    app, client, wechat_login, upload_image, report_clue, staff, fake_wechat
):
    """The issue's walk-through: report → the right desk, and only it → accept → ask → answer with the
    code → resolve as valid → the reporter sees the public notes in order and has the points once."""
    from fakewechat import fake_openid
    from yijing.models import AuditEntry, ClueEvent, Notification, PointsEntry
    from yijing.services import points

    resident = wechat_login("rosa")
    resident_id = _user_id(client, resident)
    photo = upload_image(resident).get_json()
    submitted = report_clue(
        resident,
        anonymous=True,
        photos=[photo["id"]],
        category="drugs",
        description="楼下有人深夜交易可疑物品",
    ).get_json()
    clue_id, code = submitted["id"], submitted["tracking_code"]

    kundulun = staff("desk-kdl", "desk", "150203")
    qingshan = staff("desk-qs", "desk", "150204")

    queue = _queue(client, kundulun)["items"]
    assert [item["id"] for item in queue] == [clue_id]
    assert queue[0]["jurisdiction"]["name"] == "沼潭社区"
    detail = client.get(f"/api/v1/desk/clues/{clue_id}", headers=kundulun).get_json()
    assert detail["anonymous"] is True
    assert detail["reporter"] is None
    text = json.dumps(detail, ensure_ascii=False)
    assert fake_openid("rosa") not in text
    assert not {"reporter_id", "reporter_enc", "reporter_index", "tracking_code", "tracking_hash"} & set(
        detail
    )
    assert all(event["actor"] is None for event in detail["events"])  # the submission names nobody
    assert client.get(detail["photos"][0]["url"], headers=kundulun).status_code == 200

    assert _queue(client, qingshan)["items"] == []
    other = client.get(f"/api/v1/desk/clues/{clue_id}", headers=qingshan)
    assert other.status_code == 403
    assert other.get_json()["error"]["code"] == "out_of_jurisdiction"
    assert client.get(detail["photos"][0]["url"], headers=qingshan).status_code == 404
    assert _move(client, qingshan, clue_id, to="accepted").status_code == 403

    accepted = _move(
        client,
        kundulun,
        clue_id,
        to="accepted",
        public_note="已受理，民警将前往核实",
        internal_note="转禁毒中队",
    )
    assert accepted.status_code == 200, accepted.get_json()
    assert accepted.get_json()["status"] == "accepted"
    asked = client.post(
        f"/api/v1/desk/clues/{clue_id}/messages", json={"body": "请问大概是几点？"}, headers=kundulun
    )
    assert asked.status_code == 201

    followed = client.get(f"/api/v1/clues/track/{code}").get_json()
    assert [(m["sender"], m["body"]) for m in followed["messages"]] == [("desk", "请问大概是几点？")]
    answered = client.post(f"/api/v1/clues/track/{code}/messages", json={"body": "晚上十一点左右"})
    assert answered.status_code == 201
    thread = client.get(f"/api/v1/desk/clues/{clue_id}", headers=kundulun).get_json()["messages"]
    assert thread[-1]["sender"] == "reporter" and thread[-1]["author"] is None
    assert thread[-1]["body"] == "晚上十一点左右"
    assert thread[0]["author"]["display_name"] == "desk-kdl"

    resolve = {
        "to": "resolved",
        "valid": True,
        "public_note": "已查处，感谢您的举报",
        "internal_note": "抓获 2 人",
    }
    resolved = client.post(
        f"/api/v1/desk/clues/{clue_id}/transitions",
        json=resolve,
        headers={**kundulun, "Idempotency-Key": "r1"},
    )
    assert resolved.status_code == 200, resolved.get_json()
    replayed = client.post(
        f"/api/v1/desk/clues/{clue_id}/transitions",
        json=resolve,
        headers={**kundulun, "Idempotency-Key": "r1"},
    )
    assert replayed.headers.get("Idempotent-Replayed") == "true", replayed.get_json()
    again = _move(client, kundulun, clue_id, **resolve)
    assert again.status_code == 409
    assert again.get_json()["error"]["code"] == "illegal_transition"

    expected_notes = ["线索已提交，等待值班民警受理。", "已受理，民警将前往核实", "已查处，感谢您的举报"]
    for view in (
        client.get(f"/api/v1/clues/track/{code}").get_json(),
        client.get(f"/api/v1/clues/{clue_id}", headers=resident).get_json(),
    ):
        assert [entry["note"] for entry in view["timeline"]] == expected_notes
        assert [entry["status"] for entry in view["timeline"]] == ["submitted", "accepted", "resolved"]
        assert view["status"] == "resolved" and view["valid"] is True and view["can_reply"] is False
        serialized = json.dumps(view, ensure_ascii=False)
        assert "转禁毒中队" not in serialized and "抓获" not in serialized and "desk-kdl" not in serialized

    # What is due to an anonymous reporter is sealed, then released in a later batch (issue 13).
    assert _rows(app, PointsEntry) == [] and _rows(app, Notification) == []
    from yijing.services import sealed

    with app.app_context():
        sealed.release_due(now=datetime.now(UTC) + timedelta(hours=1))
        assert points.balance(resident_id) == app.config["YIJING"].clue_valid_points
    (entry,) = _rows(app, PointsEntry)
    assert entry.user_id == resident_id and entry.reason == "clue_valid"
    assert re.fullmatch(r"clue-anon:[0-9a-f]{48}", entry.source_key)  # the ledger does not name the clue

    notes = _rows(app, Notification, order=Notification.id)
    assert [(n.user_id, n.kind, n.status) for n in notes] == [
        (resident_id, "clue_received", "pending"),
        (resident_id, "clue_status", "pending"),
        (resident_id, "clue_question", "pending"),
        (resident_id, "clue_status", "pending"),
    ]
    # Nothing in the rows names the clue: its message shows the status, the note and the time only
    # (the time of the release batch, not of the clue's event).
    assert all(n.sealed for n in notes)
    assert all(set(n.data) == {"clue_no", "status_label", "note", "changed_at"} for n in notes)
    assert {n.data["clue_no"] for n in notes} == {"ANONYMOUS"}
    assert all(not (n.page or "").endswith(f"={clue_id}") for n in notes)
    assert notes[-1].body == "已查处，感谢您的举报"
    audited = _rows(app, AuditEntry, AuditEntry.target_type == "clue", order=AuditEntry.id)
    assert [a.action for a in audited] == ["clue.transition", "clue.ask", "clue.transition"]
    assert {a.actor_id for a in audited} == {_user_id(client, kundulun)}
    internal = _rows(app, ClueEvent, ClueEvent.internal_note.is_not(None), order=ClueEvent.id)
    assert [e.internal_note for e in internal] == ["转禁毒中队", "抓获 2 人"]


def test_a_named_volunteer_gets_points_once_and_the_desk_sees_them_masked(
    app, client, wechat_login, report_clue, staff, tree
):
    from yijing.actor import Actor
    from yijing.extensions import db
    from yijing.models import PointsEntry, Role, User
    from yijing.services import auth, points

    volunteer = wechat_login("wang")
    volunteer_id = _user_id(client, volunteer)
    client.post("/api/v1/auth/phone", json={"code": "phone-13912345678"}, headers=volunteer)
    with app.app_context():
        db.session.execute(update(User).where(User.id == volunteer_id).values(display_name="王小明"))
        db.session.commit()
        auth.grant_role(volunteer_id, Role.VOLUNTEER, tree["150203-01-01"], Actor.system("test"))
        db.session.remove()
    clue_id = report_clue(volunteer).get_json()["id"]
    desk = staff("desk-kdl", "desk", "150203")

    detail = client.get(f"/api/v1/desk/clues/{clue_id}", headers=desk).get_json()
    assert detail["reporter"] == {"display_name": "王*明", "phone_masked": "139****5678"}
    assert "13912345678" not in json.dumps(detail)
    assert _move(client, desk, clue_id, to="accepted").status_code == 200
    assert _move(client, desk, clue_id, to="investigating").status_code == 200
    assert _move(client, desk, clue_id, to="resolved", valid=True).status_code == 200
    (entry,) = _rows(app, PointsEntry)
    assert (entry.user_id, entry.source_key) == (volunteer_id, f"clue:{clue_id}:valid")
    with app.app_context():
        assert points.balance(volunteer_id) == app.config["YIJING"].clue_valid_points
    mine = client.get(f"/api/v1/clues/{clue_id}", headers=volunteer).get_json()
    assert [e["note"] for e in mine["timeline"]][1:] == [
        "您的线索已受理，我们会尽快核实，感谢您的支持！",
        "民警正在核查您反映的情况。",
        "您反映的线索已核查办结，感谢您的支持！",
    ]


def test_resolving_as_not_valid_awards_nothing(app, client, wechat_login, report_clue, staff):
    from yijing.models import PointsEntry

    clue_id = report_clue(wechat_login("zed")).get_json()["id"]
    desk = staff("desk-kdl", "desk", "150203")
    _move(client, desk, clue_id, to="accepted")
    assert _move(client, desk, clue_id, to="resolved", valid=False).status_code == 200
    assert _rows(app, PointsEntry) == []


def test_the_state_machine_refuses_illegal_moves_with_409(client, wechat_login, report_clue, staff):
    clue_id = report_clue(wechat_login("ada")).get_json()["id"]
    desk = staff("desk-kdl", "desk", "150203")

    refused = _move(client, desk, clue_id, to="investigating")
    assert refused.status_code == 409
    error = refused.get_json()["error"]
    assert error["code"] == "illegal_transition"
    assert error["message"] == "线索当前为「待受理」，不能改为「核查中」"
    assert _move(client, desk, clue_id, to="resolved", valid=True).status_code == 409
    assert _move(client, desk, clue_id, to="submitted").status_code == 409
    assert _move(client, desk, clue_id, to="flying").status_code == 422

    assert _move(client, desk, clue_id, to="accepted").status_code == 200
    missing_valid = _move(client, desk, clue_id, to="resolved")
    assert missing_valid.status_code == 422 and "valid" in missing_valid.get_json()["error"]["fields"]
    no_reference = _move(client, desk, clue_id, to="transferred", transfer_target="110")
    assert no_reference.status_code == 422
    assert "transfer_reference" in no_reference.get_json()["error"]["fields"]
    no_original = _move(client, desk, clue_id, to="duplicate")
    assert no_original.status_code == 422
    itself = _move(client, desk, clue_id, to="duplicate", duplicate_of_id=clue_id)
    assert itself.status_code == 422

    transferred = _move(
        client, desk, clue_id, to="transferred", transfer_target="12345", transfer_reference="BT20240501-0012"
    )
    assert transferred.status_code == 200
    body = transferred.get_json()
    assert (body["status"], body["transfer_target"], body["transfer_reference"]) == (
        "transferred",
        "12345",
        "BT20240501-0012",
    )
    assert body["allowed_transitions"] == []
    assert _move(client, desk, clue_id, to="accepted").status_code == 409
    assert (
        client.post(
            f"/api/v1/desk/clues/{clue_id}/messages", json={"body": "还在吗"}, headers=desk
        ).status_code
        == 409
    )


@pytest.mark.parametrize("start", ["submitted", "accepted", "investigating"])
def test_transfer_to_110_is_allowed_from_every_open_state(client, wechat_login, report_clue, staff, start):
    clue_id = report_clue(wechat_login("bo")).get_json()["id"]
    desk = staff("desk-kdl", "desk", "150203")
    for step in ["accepted", "investigating"][: ["submitted", "accepted", "investigating"].index(start)]:
        assert _move(client, desk, clue_id, to=step).status_code == 200
    moved = _move(
        client, desk, clue_id, to="transferred", transfer_target="110", transfer_reference="110-778"
    )
    assert moved.status_code == 200
    timeline = client.get(f"/api/v1/clues/{clue_id}", headers=wechat_login("bo")).get_json()["timeline"]
    assert timeline[-1]["note"] == "您的线索已移交110 报警平台处理。"


def test_the_queue_shows_urgent_first_then_oldest_with_filters_and_cursor(
    app, client, wechat_login, report_clue, upload_image, staff, places, tree
):
    from yijing.extensions import db
    from yijing.models import Clue
    from yijing.models.base import utcnow

    reporter = wechat_login("cy")
    photo = upload_image(reporter).get_json()["id"]
    ids = {
        "old": report_clue(reporter, category="fraud").get_json()["id"],
        "urgent_new": report_clue(reporter, category="dispute", urgent=True).get_json()["id"],
        "photo": report_clue(reporter, photos=[photo]).get_json()["id"],
        "urgent_old": report_clue(reporter, category="dispute", urgent=True).get_json()["id"],
        "qingshan": report_clue(reporter, place=places["qingshan"]).get_json()["id"],
    }
    ages = {"old": 50, "urgent_new": 10, "photo": 30, "urgent_old": 40, "qingshan": 20}
    with app.app_context():
        for name, minutes in ages.items():
            db.session.execute(
                update(Clue)
                .where(Clue.id == ids[name])
                .values(created_at=utcnow() - timedelta(minutes=minutes))
            )
        db.session.commit()
        db.session.remove()
    city = staff("desk-city", "desk", "150200")
    kundulun = staff("desk-kdl", "desk", "150203")

    order = [i["id"] for i in _queue(client, city)["items"]]
    assert order == [ids[n] for n in ["urgent_old", "urgent_new", "old", "photo", "qingshan"]]
    walked, cursor = [], None
    while True:
        page = _queue(client, city, limit=2, **({"cursor": cursor} if cursor else {}))
        walked += [i["id"] for i in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert walked == order

    assert [i["id"] for i in _queue(client, kundulun)["items"]] == order[:4]
    assert [i["id"] for i in _queue(client, city, category="dispute")["items"]] == order[:2]
    assert [i["id"] for i in _queue(client, city, has_photos="true")["items"]] == [ids["photo"]]
    assert len(_queue(client, city, has_photos="false")["items"]) == 4
    subtree = _queue(client, city, jurisdiction_id=tree["150204"])["items"]
    assert [i["id"] for i in subtree] == [ids["qingshan"]]
    outside = client.get(
        "/api/v1/desk/clues", query_string={"jurisdiction_id": tree["150204"]}, headers=kundulun
    )
    assert outside.status_code == 403
    since = (utcnow() - timedelta(minutes=35)).isoformat()
    assert {i["id"] for i in _queue(client, city, created_from=since)["items"]} == {
        ids["urgent_new"],
        ids["photo"],
        ids["qingshan"],
    }
    until = (utcnow() - timedelta(minutes=35)).isoformat()
    assert {i["id"] for i in _queue(client, city, created_to=until)["items"]} == {
        ids["old"],
        ids["urgent_old"],
    }

    _move(client, city, ids["old"], to="rejected")
    assert ids["old"] not in [i["id"] for i in _queue(client, city)["items"]]
    assert [i["id"] for i in _queue(client, city, status="rejected")["items"]] == [ids["old"]]
    both = client.get("/api/v1/desk/clues?status=rejected&status=submitted&category=fraud", headers=city)
    assert [i["id"] for i in both.get_json()["items"]] == [ids["old"]]

    patched = client.patch(f"/api/v1/desk/clues/{ids['photo']}", json={"urgent": True}, headers=kundulun)
    assert patched.status_code == 200 and patched.get_json()["urgent"] is True
    urgent_now = [i["id"] for i in _queue(client, kundulun)["items"]]
    assert urgent_now == [ids["urgent_old"], ids["photo"], ids["urgent_new"]]
    assert client.get("/api/v1/desk/clues", headers=wechat_login("cy")).status_code == 403


def test_assignment_shows_who_handles_a_clue_and_stops_a_second_taker(
    client, wechat_login, report_clue, staff
):
    clue_id = report_clue(wechat_login("dee")).get_json()["id"]
    first = staff("desk-a", "desk", "150203")
    second = staff("desk-b", "desk", "150203-01")
    qingshan = staff("desk-q", "desk", "150204")
    first_id, second_id, qingshan_id = (_user_id(client, h) for h in (first, second, qingshan))

    def assign(headers, assignee_id, force=False):
        return client.post(
            f"/api/v1/desk/clues/{clue_id}/assignment",
            json={"assignee_id": assignee_id, "force": force},
            headers=headers,
        )

    taken = assign(first, first_id)
    assert taken.status_code == 200
    assert taken.get_json()["assignee"] == {"id": first_id, "display_name": "desk-a"}
    listed = _queue(client, second)["items"][0]
    assert listed["assignee"]["display_name"] == "desk-a" and listed["assigned_at"]
    assert [i["id"] for i in _queue(client, first, assignee="me")["items"]] == [clue_id]
    assert _queue(client, second, assignee="none")["items"] == []

    clash = assign(second, second_id)
    assert clash.status_code == 409
    assert clash.get_json()["error"]["code"] == "already_assigned"
    assert "desk-a" in clash.get_json()["error"]["message"]
    outsider = assign(first, qingshan_id)
    assert outsider.status_code == 422
    assert outsider.get_json()["error"]["code"] == "invalid_assignee"

    took_over = assign(second, second_id, force=True)
    assert took_over.status_code == 200
    assert took_over.get_json()["assignee"]["id"] == second_id
    events = [e for e in took_over.get_json()["events"] if e["kind"] == "assigned"]
    assert [e["internal_note"] for e in events] == ["指派给 desk-a", "指派给 desk-b"]
    released = assign(second, None)
    assert released.status_code == 200 and released.get_json()["assignee"] is None


def test_a_reply_from_the_reporter_reaches_the_assignee_inbox(app, client, wechat_login, report_clue, staff):
    from yijing.models import Notification

    reporter = wechat_login("eda")
    clue_id = report_clue(reporter, anonymous=True).get_json()["id"]
    desk = staff("desk-a", "desk", "150203")
    desk_id = _user_id(client, desk)
    client.post(f"/api/v1/desk/clues/{clue_id}/assignment", json={"assignee_id": desk_id}, headers=desk)
    client.post(f"/api/v1/clues/{clue_id}/messages", json={"body": "补充：车牌蒙A12345"}, headers=reporter)
    (note,) = _rows(app, Notification, Notification.user_id == desk_id)
    assert note.kind == "clue_reply" and note.data == {"clue_id": clue_id}


def test_duplicates_are_suggested_and_marking_one_tells_the_later_reporter(
    app, client, wechat_login, report_clue, staff, places, run_jobs, release_sealed
):
    from yijing.models import Clue, ClueEvent, Notification

    earlier_reporter, later_reporter = wechat_login("fin"), wechat_login("gia")
    later_id = _user_id(client, later_reporter)
    near = dict(places["kundulun"], lat=places["kundulun"]["lat"] + 0.001)  # about 110 m away
    earlier = report_clue(earlier_reporter, category="gambling").get_json()["id"]
    other_kind = report_clue(earlier_reporter, category="fraud", place=near).get_json()["id"]
    far = report_clue(earlier_reporter, category="gambling", place=places["qingshan"]).get_json()["id"]
    later = report_clue(later_reporter, category="gambling", place=near, anonymous=True).get_json()["id"]
    run_jobs("default")

    assert all(c.duplicates_checked_at is not None for c in _rows(app, Clue))
    city = staff("desk-city", "desk", "150200")
    later_view = client.get(f"/api/v1/desk/clues/{later}", headers=city).get_json()
    assert [(c["id"], c["category"]) for c in later_view["duplicate_candidates"]] == [(earlier, "gambling")]
    assert 90 <= later_view["duplicate_candidates"][0]["distance_m"] <= 130
    earlier_view = client.get(f"/api/v1/desk/clues/{earlier}", headers=city).get_json()
    assert [c["id"] for c in earlier_view["duplicate_candidates"]] == [later]
    assert (
        client.get(f"/api/v1/desk/clues/{other_kind}", headers=city).get_json()["duplicate_candidates"] == []
    )
    assert client.get(f"/api/v1/desk/clues/{far}", headers=city).get_json()["duplicate_candidates"] == []

    marked = _move(client, city, later, to="duplicate", duplicate_of_id=earlier, internal_note="同一赌点")
    assert marked.status_code == 200
    assert marked.get_json()["duplicate_of_id"] == earlier
    linked = _rows(app, ClueEvent, ClueEvent.clue_id == earlier, ClueEvent.kind == "duplicate_linked")
    assert [e.internal_note for e in linked] == [f"线索 #{later} 被标记为本线索的重复"]
    release_sealed()  # the later reporter is anonymous: their notification is released in a batch
    told = _rows(app, Notification, Notification.user_id == later_id, Notification.kind == "clue_status")
    assert [n.title for n in told] == ["线索进展：重复线索"]
    mine = client.get(f"/api/v1/clues/{later}", headers=later_reporter).get_json()
    assert mine["status"] == "duplicate"
    assert mine["timeline"][-1]["note"] == "您反映的情况已有其他群众报告，我们正在一并处理，感谢您的支持！"
    # Marking a duplicate of a duplicate links to the original.
    third = report_clue(wechat_login("hana"), category="gambling").get_json()["id"]
    chained = _move(client, city, third, to="duplicate", duplicate_of_id=later)
    assert chained.get_json()["duplicate_of_id"] == earlier


def test_canned_replies_are_picked_edited_and_scoped(app, client, wechat_login, report_clue, staff, tree):
    city = staff("desk-city", "desk", "150200")
    kundulun = staff("desk-kdl", "desk", "150203")
    qingshan = staff("desk-qs", "desk", "150204")

    def create(headers, key, title, body):
        return client.post(
            "/api/v1/desk/clue-replies",
            json={"jurisdiction_id": tree[key], "title": title, "body": body},
            headers=headers,
        )

    citywide = create(city, "150200", "受理", "您的线索已受理，民警会在 24 小时内核实。")
    assert citywide.status_code == 201
    local = create(kundulun, "150203", "昆区回访", "昆都仑分局已安排社区民警回访。").get_json()
    assert create(kundulun, "150204", "越权", "不应成功").status_code == 403

    def titles(headers):
        return [r["title"] for r in client.get("/api/v1/desk/clue-replies", headers=headers).get_json()]

    assert titles(kundulun) == ["受理", "昆区回访"]
    assert titles(qingshan) == ["受理"]
    assert titles(city) == ["受理", "昆区回访"]

    reply_id = citywide.get_json()["id"]
    assert (
        client.patch(
            f"/api/v1/desk/clue-replies/{reply_id}", json={"title": "x"}, headers=kundulun
        ).status_code
        == 403
    )
    edited = client.patch(
        f"/api/v1/desk/clue-replies/{local['id']}", json={"body": "社区民警将回访。"}, headers=kundulun
    )
    assert edited.status_code == 200 and edited.get_json()["body"] == "社区民警将回访。"

    reporter = wechat_login("ivy")
    clue_id = report_clue(reporter).get_json()["id"]
    picked = _move(client, kundulun, clue_id, to="accepted", canned_reply_id=reply_id)
    assert picked.status_code == 200
    assert picked.get_json()["events"][-1]["public_note"] == "您的线索已受理，民警会在 24 小时内核实。"
    edited_note = _move(
        client, kundulun, clue_id, to="investigating", canned_reply_id=local["id"], public_note="改写后的说明"
    )
    assert edited_note.get_json()["events"][-1]["public_note"] == "改写后的说明"
    foreign = create(qingshan, "150204", "青山", "青山分局").get_json()
    assert _move(client, kundulun, clue_id, to="rejected", canned_reply_id=foreign["id"]).status_code == 404

    assert client.delete(f"/api/v1/desk/clue-replies/{local['id']}", headers=qingshan).status_code == 404
    assert client.delete(f"/api/v1/desk/clue-replies/{local['id']}", headers=kundulun).status_code == 204
    assert titles(kundulun) == ["受理"]
    assert client.get("/api/v1/desk/clue-replies", headers=reporter).status_code == 403
