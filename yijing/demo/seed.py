"""Demo data for a laptop run: Baotou's jurisdictions and a few staff accounts.

The passwords below are demo values, printed on purpose; ``seed-demo`` refuses to run in production.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from sqlalchemy import select

from yijing.actor import Actor
from yijing.extensions import db
from yijing.models import Role, User
from yijing.services import auth, jurisdictions

DATA_FILE = Path(__file__).parent / "data" / "baotou_jurisdictions.json"

# (username, display name, password, role, jurisdiction key)
DEMO_STAFF = [
    ("admin", "市局管理员", "demo-admin-2026", Role.ADMIN, "150200"),
    ("desk-kdl", "昆都仑分局值班台", "demo-desk-2026", Role.DESK, "150203"),
    ("desk-qs", "青山分局值班台", "demo-desk-2026", Role.DESK, "150204"),
    ("leader-kdl-01", "昆都仑区社区负责人", "demo-leader-2026", Role.LEADER, "150203-01-01"),
]


def load_demo() -> Iterator[str]:
    """Import the tree and create the demo staff; running it again changes nothing new."""
    result = jurisdictions.import_nodes(jurisdictions.read_import_file(DATA_FILE))
    yield f"jurisdictions: {result.created} created, {result.updated} updated"
    for username, name, password, role, key in DEMO_STAFF:
        user = db.session.scalar(select(User).where(User.username == username))
        if user is None:
            user = auth.create_staff(username, password, name)
        target = jurisdictions.get_by_key(key)
        auth.grant_role(user.id, role, target.id, Actor.system("seed-demo"))
        yield f"demo staff  {username:<15} password {password:<17} {role} over {target.name}"
