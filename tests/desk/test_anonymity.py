"""Anonymous reporters stay anonymous (issue 13): after an anonymous report, a status change and a
question, nothing a city admin can read through the desk API or its exports names the reporter or
lets them be tied to the clue by time."""

from __future__ import annotations

import json
from datetime import timedelta

from sqlalchemy import select, text

from fakewechat import fake_openid

DISTINCT_USER_ID = 987_654


def _start_user_ids_at(app, value: int) -> None:
    """Give the next user a distinctive id, so that finding it in a response means something."""
    from yijing.extensions import db
    from yijing.models import User

    with app.app_context():
        if db.engine.dialect.name == "postgresql":
            db.session.execute(text("SELECT setval('users_id_seq', :v, false)"), {"v": value})
        else:
            db.session.add(User(id=value - 1, kind="staff", username="placeholder", display_name=""))
        db.session.commit()
        db.session.remove()


def _url(rule, ids: dict[str, int]) -> str | None:
    values = {}
    for name in rule.arguments:
        if name not in ids:
            return None
        values[name] = ids[name]
    path = rule.rule
    for name, value in values.items():
        path = path.replace(f"<int:{name}>", str(value))
    return path


def test_no_desk_endpoint_or_export_ties_an_anonymous_clue_to_its_reporter(
    app, client, wechat_login, report_clue, staff, tree, fake_wechat, run_jobs, release_sealed
):
    from yijing.extensions import db
    from yijing.models import ClueEvent, Notification, PointsEntry, SealedEnvelope, User
    from yijing.services import sealed

    _start_user_ids_at(app, DISTINCT_USER_ID)
    resident = wechat_login("rosa")
    me = client.get("/api/v1/me", headers=resident).get_json()
    assert me["id"] == DISTINCT_USER_ID
    phone = "13700004321"
    assert (
        client.post("/api/v1/auth/phone", json={"code": f"phone-{phone}"}, headers=resident).status_code
        == 200
    )
    submitted = report_clue(
        resident, anonymous=True, category="drugs", description="楼下有人深夜交易可疑物品"
    )
    assert submitted.status_code == 201, submitted.get_json()
    clue_id = submitted.get_json()["id"]

    admin = staff("city-admin", "admin", "150200")
    assert (
        client.post(
            f"/api/v1/desk/clues/{clue_id}/transitions",
            json={"to": "accepted", "public_note": "已受理"},
            headers=admin,
        ).status_code
        == 200
    )
    assert (
        client.post(
            f"/api/v1/desk/clues/{clue_id}/messages", json={"body": "请问大概是几点？"}, headers=admin
        ).status_code
        == 201
    )

    # Nothing naming the reporter is written next to the clue's events: only sealed envelopes,
    # which hold neither the user nor the clue in clear, and a release now opens none of them.
    with app.app_context():
        assert (
            db.session.scalars(select(Notification).where(Notification.user_id == DISTINCT_USER_ID)).all()
            == []
        )
        envelopes = db.session.scalars(select(SealedEnvelope)).all()
        assert len(envelopes) == 3
        assert all(
            str(DISTINCT_USER_ID) not in e.payload_enc and "已受理" not in e.payload_enc for e in envelopes
        )
        assert sealed.release_due() == {"notify": 0, "points": 0}
        db.session.remove()
    release_sealed()
    run_jobs()

    with app.app_context():
        events = db.session.scalars(select(ClueEvent.created_at).where(ClueEvent.clue_id == clue_id)).all()
        rows = db.session.scalars(select(Notification).where(Notification.user_id == DISTINCT_USER_ID)).all()
        points = db.session.scalars(select(PointsEntry).where(PointsEntry.user_id == DISTINCT_USER_ID)).all()
        assert len(rows) == 3 and all(n.sealed for n in rows)
        minimum = timedelta(seconds=app.config["YIJING"].sealed_delay_min_seconds)
        for row in [*rows, *points]:
            assert all(abs(row.created_at - at) >= minimum for at in events)
        assert len({n.created_at for n in rows}) == 1  # one batch, one time
        user = db.session.get(User, DISTINCT_USER_ID)
        secrets_of_reporter = [str(DISTINCT_USER_ID), fake_openid("rosa"), user.openid, phone, "137****4321"]
        db.session.remove()

    # The exports the city admin can make.
    export_ids = []
    for kind in ("summary", "series", "coverage", "leaderboard", "roster"):
        started = client.post("/api/v1/desk/exports", json={"kind": kind}, headers=admin)
        assert started.status_code == 202, started.get_json()
        export_ids.append(started.get_json()["id"])
    run_jobs()

    seen: list[str] = []
    ids = {
        "clue_id": clue_id,
        "jurisdiction_id": tree["150200"],
        "volunteer_id": 1,
        "task_id": 1,
        "team_id": 1,
        "post_id": 1,
        "message_id": 1,
        "broadcast_id": 1,
        # A staff account looked up by the reporter's own id must not answer with them.
        "user_id": DISTINCT_USER_ID,
    }
    rules = [r for r in app.url_map.iter_rules() if r.rule.startswith("/api/v1/desk") and "GET" in r.methods]
    for rule in rules:
        for export_id in export_ids if "export_id" in rule.arguments else [None]:
            url = _url(rule, {**ids, **({"export_id": export_id} if export_id else {})})
            assert url is not None, f"no id for {rule.rule}"
            queries = [{}]
            if rule.rule.endswith("/outbox/notifications"):
                queries += [{"kind": k} for k in ("clue_received", "clue_status", "clue_question")]
            for query in queries:
                response = client.get(url, query_string=query, headers=admin)
                assert response.status_code < 500, (url, response.status_code)
                seen.append(url)
                body = response.get_data(as_text=True)
                response.close()  # a file download holds the file open until closed
                for secret in secrets_of_reporter:
                    assert secret not in body, f"{url} {query} shows {secret!r}"
                if rule.rule.endswith("/outbox/notifications") and response.status_code == 200:
                    items = response.get_json()["items"]
                    sealed_rows = [i for i in items if i["sealed"]]
                    assert all(i["user_id"] is None for i in sealed_rows)
                    if query:
                        assert sealed_rows, "the admin still sees the rows, without a recipient"
    assert any("/exports/" in url and url.endswith("/file") for url in seen)
    assert f"/api/v1/desk/clues/{clue_id}" in seen
    detail = client.get(f"/api/v1/desk/clues/{clue_id}", headers=admin).get_json()
    assert detail["anonymous"] is True and detail["reporter"] is None
    assert fake_openid("rosa") not in json.dumps(detail, ensure_ascii=False)
