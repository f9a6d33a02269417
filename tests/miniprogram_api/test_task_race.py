"""Fifty volunteers accept a five-place task at the same instant, over real HTTP: exactly five
get the place, the other 45 a clear 409 ``task_full``."""

from __future__ import annotations

import threading
import uuid
from concurrent.futures import ThreadPoolExecutor

import requests
from sqlalchemy import func, select
from werkzeug.serving import make_server

from yijing.extensions import limiter

RACERS = 50
SLOTS = 5


def _serve(app):
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    return server, thread


def test_fifty_concurrent_acceptances_fill_exactly_five_places(app, client, tasks, volunteers, staff, tree):
    desk = staff("desk-kdl", "desk", "150203")
    racers = []
    for i in range(RACERS):
        if i % 15 == 0:
            limiter.reset()  # wechat-login allows 20 a minute from one address
        racers.append(volunteers.approved(desk, f"racer{i}")[0])
    task = tasks.create(desk, slots=SLOTS, title="学校门口护校安园", kind="campus_guard")

    server, thread = _serve(app)
    base = f"http://127.0.0.1:{server.server_port}"
    start = threading.Barrier(RACERS)

    def accept(headers: dict[str, str]) -> requests.Response:
        with requests.Session() as session:
            # Open the connection first so that the barrier releases requests, not handshakes.
            session.get(f"{base}/healthz", timeout=30)
            start.wait(timeout=60)
            return session.post(
                f"{base}/api/v1/tasks/{task['id']}/accept",
                json={},
                headers={**headers, "Idempotency-Key": str(uuid.uuid4())},
                timeout=60,
            )

    try:
        with ThreadPoolExecutor(max_workers=RACERS) as pool:
            responses = list(pool.map(accept, racers))
    finally:
        server.shutdown()
        thread.join(timeout=10)
        server.server_close()

    statuses = sorted(r.status_code for r in responses)
    errors = [r.text for r in responses if r.status_code >= 500]
    assert statuses == [200] * SLOTS + [409] * (RACERS - SLOTS), errors
    for response in responses:
        if response.status_code == 409:
            error = response.json()["error"]
            assert error["code"] == "task_full"
            assert "已满员" in error["message"]
        else:
            assert response.json()["status"] == "accepted"

    with app.app_context():
        from yijing.extensions import db
        from yijing.models import Assignment, Task

        stored = db.session.get(Task, task["id"])
        assert stored.filled == SLOTS
        holders = db.session.scalar(
            select(func.count()).select_from(Assignment).where(Assignment.task_id == task["id"])
        )
        assert holders == SLOTS
        db.session.remove()

    board = client.get(f"/api/v1/desk/tasks/{task['id']}", headers=desk).get_json()
    assert board["filled"] == SLOTS and board["counts"]["accepted"] == SLOTS and board["remaining"] == 0
