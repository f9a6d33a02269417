"""Two deployments on one Redis, told apart by QUEUE_PREFIX (and REDIS_PREFIX): each one's jobs run, and
a nearby dispatch's first ring goes out at once in both (job ids carry the prefix, so the second
deployment's ``task-dispatch-1-1`` is not refused as a duplicate of the first's)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import psycopg
import pytest
from flask_migrate import upgrade
from sqlalchemy.engine import make_url

PLACE = (40.6525, 109.8330)


@pytest.fixture
def second_database(database_url: str, tmp_path) -> Iterator[str]:
    """An empty database beside the test database (another deployment's)."""
    url = make_url(database_url)
    if url.get_backend_name() == "sqlite":
        yield f"sqlite:///{tmp_path / 'other-deployment.db'}"
        return
    name = f"{url.database}_other"
    server = url.set(drivername="postgresql", database="postgres").render_as_string(hide_password=False)
    with psycopg.connect(server, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')
    yield url.set(database=name).render_as_string(hide_password=False)
    with psycopg.connect(server, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


class Deployment:
    """One deployment through HTTP: its app, a desk account over the city, helpers bound to its client."""

    def __init__(self, app, tree_nodes, volunteers_helper, tasks_helper) -> None:
        from yijing.actor import Actor
        from yijing.extensions import db
        from yijing.models import Jurisdiction, Role
        from yijing.services import auth, jurisdictions

        self.app = app
        self.client = app.test_client()
        with app.app_context():
            if not db.session.query(Jurisdiction).first():
                jurisdictions.import_nodes(tree_nodes)
            self.tree = {j.key: j.id for j in db.session.query(Jurisdiction)}
            user = auth.create_staff("desk-city", "correct horse battery", "desk-city")
            auth.grant_role(user.id, Role("desk"), self.tree["150200"], Actor.system("test"))
            db.session.remove()
        login = self.client.post(
            "/api/v1/desk/auth/login", json={"username": "desk-city", "password": "correct horse battery"}
        )
        assert login.status_code == 200, login.get_json()
        self.desk = {"Authorization": f"Bearer {login.get_json()['token']}"}
        self.volunteers = type(volunteers_helper)(self.client, self._wechat_login, self.tree)
        self.tasks = type(tasks_helper)(app, self.client, self.tree)

    def _wechat_login(self, name: str) -> dict[str, str]:
        response = self.client.post(
            "/api/v1/auth/wechat-login", json={"code": f"{name}.{uuid.uuid4().hex[:8]}"}
        )
        assert response.status_code == 200, response.get_json()
        return {"Authorization": f"Bearer {response.get_json()['token']}"}

    def nearby_task_with_one_volunteer(self) -> tuple[int, int]:
        headers, body = self.volunteers.approved(self.desk, "near", jurisdiction_id=self.tree["150203-01-01"])
        self.volunteers.on_duty(headers, PLACE[0] + 0.003, PLACE[1])
        task = self.tasks.create(
            self.desk, dispatch_mode="nearby", kind="missing_person", title="寻找走失老人", slots=1
        )
        return task["id"], body["id"]

    def invited(self, task_id: int) -> list[int]:
        view = self.client.get(f"/api/v1/desk/tasks/{task_id}/dispatch", headers=self.desk).get_json()
        return [i["volunteer_id"] for ring in view["rings"] for i in ring["invitations"]]


def _tree_nodes(app) -> list[dict]:
    """The test tree as import rows (the same jurisdictions in the other deployment)."""
    from yijing.extensions import db
    from yijing.models import Jurisdiction

    with app.app_context():
        rows = db.session.query(Jurisdiction).order_by(Jurisdiction.depth, Jurisdiction.id).all()
        keys = {j.id: j.key for j in rows}
        nodes = [
            {
                "key": j.key,
                "parent_key": keys.get(j.parent_id),
                "name": j.name,
                "level": j.level,
                "code": j.code,
                "lat": j.lat,
                "lng": j.lng,
            }
            for j in rows
        ]
        db.session.remove()
    return nodes


def test_two_deployments_on_one_redis_each_run_their_own_jobs(
    app, make_app, second_database, tree, volunteers, tasks
):
    from yijing import jobs

    other = make_app(DATABASE_URL=second_database, QUEUE_PREFIX="yjother-", REDIS_PREFIX="yjother:")
    with other.app_context():
        upgrade()
    nodes = _tree_nodes(app)
    first = Deployment(app, nodes, volunteers, tasks)
    second = Deployment(other, nodes, volunteers, tasks)
    task_a, volunteer_a = first.nearby_task_with_one_volunteer()
    task_b, volunteer_b = second.nearby_task_with_one_volunteer()
    assert task_a == task_b  # the same ids in both databases, the same job names in one Redis

    with app.app_context():
        ring_job = jobs.job_id(f"task-dispatch-{task_a}-1")
        assert ring_job.startswith("yjtest-")
    with other.app_context():
        assert jobs.job_id(f"task-dispatch-{task_b}-1").startswith("yjother-")

    # Each deployment's worker takes only its own queues, and finds its own first ring there at once.
    second.tasks.run_jobs("dispatch")
    assert second.invited(task_b) == [volunteer_b]
    assert first.invited(task_a) == []  # not run by the other deployment's worker
    first.tasks.run_jobs("dispatch")
    assert first.invited(task_a) == [volunteer_a]
