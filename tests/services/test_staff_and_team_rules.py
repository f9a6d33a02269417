"""Staff accounts and teams: the rules of the services, called directly against the real database."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from tests.fixtures.people import actor_of
from yijing.errors import Conflict, Forbidden, InvalidInput, Unauthorized
from yijing.extensions import db
from yijing.models import AuditEntry, Role, Team, User, Volunteer
from yijing.services import auth, teams
from yijing.services import staff as staff_service


def _create(admin, username: str, *, key_id: int, password: str = "fresh password 42", role: str = "desk"):
    return staff_service.create_staff(
        admin,
        actor_of(admin),
        username=username,
        display_name="",
        password=password,
        role=role,
        jurisdiction_id=key_id,
    )


def test_a_new_account_must_change_its_password_and_the_weak_or_taken_are_refused(principal, tree):
    admin = principal("admin-s1", "admin", "150203")
    account = _create(admin, "desk.new", key_id=tree["150203-01"])
    assert account.must_change_password and account.display_name == "desk.new"
    assert [(g.role, g.jurisdiction.id) for g in account.grants] == [(Role.DESK, tree["150203-01"])]
    with pytest.raises(InvalidInput) as weak:
        _create(admin, "desk.weak", key_id=tree["150203-01"], password="desk.weak123")
    assert weak.value.code == "weak_password" and "密码不能包含用户名" in weak.value.fields["password"]
    with pytest.raises(Conflict) as taken:
        _create(admin, "DESK.NEW", key_id=tree["150203-01"])
    assert taken.value.code == "username_taken"
    assert db.session.scalar(select(User.id).where(User.username == "desk.weak")) is None


def test_an_admin_manages_only_accounts_wholly_inside_their_subtree(principal, tree):
    district_admin = principal("admin-s2", "admin", "150203")
    city_admin = principal("admin-city", "admin", "150200")
    with pytest.raises(Forbidden) as outside:
        staff_service.get_staff(district_admin, city_admin.user_id)
    assert outside.value.code == "out_of_jurisdiction"
    with pytest.raises(Forbidden):  # nor grant a role above their own subtree
        _create(district_admin, "desk.city", key_id=tree["150200"])
    listed = staff_service.list_staff(district_admin, None, cursor=None, limit=50)
    assert city_admin.user_id not in [a.id for a in listed.items]


def test_the_last_grant_stays_and_deactivation_ends_the_sessions(principal, tree):
    admin = principal("admin-s3", "admin", "150203")
    account = _create(admin, "desk.gone", key_id=tree["150203-01"])
    with pytest.raises(Conflict) as last:
        staff_service.revoke(admin, actor_of(admin), account.id, Role.DESK, tree["150203-01"])
    assert last.value.code == "last_grant"
    with pytest.raises(Conflict):
        staff_service.set_active(admin, actor_of(admin), admin.user_id, False, "自己停用自己")
    issued = auth.staff_login("desk.gone", "fresh password 42", actor_of(admin))
    assert auth.authenticate(issued.token).user_id == account.id
    stopped = staff_service.set_active(admin, actor_of(admin), account.id, False, "调离岗位")
    assert not stopped.is_active
    with pytest.raises(Unauthorized):
        auth.authenticate(issued.token)
    actions = db.session.scalars(
        select(AuditEntry.action).where(
            AuditEntry.target_type == "user", AuditEntry.target_id == str(account.id)
        )
    ).all()
    assert "staff.deactivate" in actions


def test_a_captain_must_be_an_approved_member_of_the_team(app_ctx, principal, volunteers, staff, tree):
    desk_headers = staff("desk-t1", "desk", "150203")
    _, member = volunteers.approved(desk_headers, "member")
    _, outsider = volunteers.approved(
        staff("desk-t2", "desk", "150204"),
        "outsider",
        jurisdiction_id=tree["150204-01-01"],
        phone="13912345678",
    )
    manager = principal("desk-t3", "desk", "150203")
    team_id = member["team"]["id"]
    with pytest.raises(InvalidInput) as refused:
        teams.update(manager, team_id, {"captain_volunteer_id": outsider["id"]}, actor_of(manager))
    assert refused.value.code == "invalid_captain"
    named = teams.update(manager, team_id, {"captain_volunteer_id": member["id"]}, actor_of(manager))
    assert named.captain is not None and named.captain.volunteer_id == member["id"]
    team = db.session.get(Team, team_id)
    assert team.captain_user_id == db.session.get(Volunteer, member["id"]).user_id and team.version == 1
    unchanged = teams.update(manager, team_id, {"captain_volunteer_id": member["id"]}, actor_of(manager))
    assert unchanged.captain == named.captain and db.session.get(Team, team_id).version == 1
