"""Issue 8: a roster export at the city's size completes in the background and matches the roster.

A scale test: left out of `make test`, run by `make test-scale` (``pytest -m scale``).
"""

from __future__ import annotations

import csv
import io
import threading
import time

import pytest
from sqlalchemy import select

pytestmark = pytest.mark.scale

VOLUNTEERS = 200_000


def test_a_roster_of_200000_volunteers_exports_in_the_background(client, app, tree, staff, run_jobs):
    from yijing.demo import datagen
    from yijing.extensions import db
    from yijing.models import Jurisdiction, Volunteer, VolunteerStatus
    from yijing.models.volunteer import CATEGORY_LABELS
    from yijing.services.volunteers import STATUS_LABELS

    with app.app_context():
        rows = db.session.execute
        district = db.session.get(Jurisdiction, tree["150203"])
        datagen.generate(
            VOLUNTEERS, 0, 0, seed=11, root_path=district.path, statuses=[VolunteerStatus.APPROVED]
        )
        names = dict(db.session.execute(select(Jurisdiction.id, Jurisdiction.name)).all())
        roster = [
            [
                number or "",
                name,
                id_number,
                phone,
                CATEGORY_LABELS[category],
                STATUS_LABELS[status],
                names[community_id],
                decided_at.isoformat(),
            ]
            for number, name, id_number, phone, category, status, community_id, decided_at in rows(
                select(
                    Volunteer.volunteer_number,
                    Volunteer.name_masked,
                    Volunteer.id_number_masked,
                    Volunteer.phone_masked,
                    Volunteer.category,
                    Volunteer.status,
                    Volunteer.community_id,
                    Volunteer.decided_at,
                ).order_by(Volunteer.id)
            )
        ]
        db.session.remove()
    assert len(roster) == VOLUNTEERS

    leader = staff("leader-roster", "leader", "150203")
    started = client.post("/api/v1/desk/exports", json={"kind": "roster"}, headers=leader)
    assert started.status_code == 202, started.get_json()
    export_id = started.get_json()["id"]

    # The leader polls the progress (another client, as another browser tab) while the worker runs.
    seen: list[tuple[str, int, int]] = []

    def poll() -> None:
        poller = app.test_client()
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            body = poller.get(f"/api/v1/desk/exports/{export_id}", headers=leader).get_json()
            seen.append((body["status"], body["done"], body["total"]))
            if body["status"] in ("done", "failed"):
                return
            time.sleep(0.05)

    watcher = threading.Thread(target=poll)
    watcher.start()
    run_jobs("reports")
    watcher.join()
    assert seen[-1] == ("done", VOLUNTEERS, VOLUNTEERS)
    assert any(status == "running" and 0 < done < VOLUNTEERS for status, done, _ in seen), seen[:5]
    assert [done for _, done, _ in seen] == sorted(done for _, done, _ in seen)

    with client.get(f"/api/v1/desk/exports/{export_id}/file", headers=leader) as download:
        assert download.status_code == 200
        rows = list(csv.reader(io.StringIO(download.data.decode("utf-8-sig"))))
    assert rows[0] == ["义警编号", "姓名", "身份证号", "手机号", "类别", "状态", "社区", "审核时间"]
    assert rows[1:] == roster
