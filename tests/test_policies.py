"""The policy module: a grant covers its subtree and nothing else."""

from __future__ import annotations

import pytest

from yijing.errors import Forbidden
from yijing.policies import Grant, Permission, Principal, may, require, require_somewhere, scope_paths


def principal(*grants: tuple[str, str]) -> Principal:
    return Principal(user_id=1, kind="staff", grants=tuple(Grant(r, i, p) for i, (r, p) in enumerate(grants)))


def test_subtree_and_siblings():
    desk = principal(("desk", "/1/2/"))
    assert may(desk, Permission.CLUE_TRIAGE, "/1/2/")
    assert may(desk, Permission.CLUE_TRIAGE, "/1/2/7/9/")
    assert not may(desk, Permission.CLUE_TRIAGE, "/1/")
    assert not may(desk, Permission.CLUE_TRIAGE, "/1/3/")
    assert not may(desk, Permission.CLUE_TRIAGE, "/1/22/"), "a prefix of digits is not a subtree"


def test_role_decides_the_permission():
    leader = principal(("leader", "/1/2/"))
    assert may(leader, Permission.REPORT_VIEW, "/1/2/5/")
    assert not may(leader, Permission.VOLUNTEER_PII, "/1/2/5/")
    with pytest.raises(Forbidden):
        require(leader, Permission.TASK_MANAGE, "/1/2/5/")
    with pytest.raises(Forbidden):
        require_somewhere(principal(), Permission.REPORT_VIEW)


def test_scope_paths_drop_nested_roots():
    staff = principal(("desk", "/1/2/"), ("desk", "/1/2/5/"), ("desk", "/1/3/"), ("leader", "/1/4/"))
    assert scope_paths(staff, Permission.CLUE_TRIAGE) == ["/1/2/", "/1/3/"]
    assert scope_paths(staff, Permission.REPORT_VIEW) == ["/1/2/", "/1/3/", "/1/4/"]


def test_every_permission_has_roles():
    assert all(Permission(p) in __import__("yijing.policies").policies.ROLES_WITH for p in Permission)
