"""The one place that answers "may this user do this here?".

A role granted on a jurisdiction covers that jurisdiction's whole subtree and nothing outside it.
Every endpoint asks through :func:`require` (one target) or :func:`scope_paths` (lists).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from yijing.errors import Forbidden
from yijing.models.user import Role


class Permission(StrEnum):
    JURISDICTION_READ = "jurisdiction.read"
    VOLUNTEER_REVIEW = "volunteer.review"
    VOLUNTEER_PII = "volunteer.read_pii"
    VOLUNTEER_LOCATE = "volunteer.locate"
    TEAM_MANAGE = "team.manage"
    TASK_MANAGE = "task.manage"
    CLUE_TRIAGE = "clue.triage"
    FEED_PUBLISH = "feed.publish"
    MESSAGE_ANSWER = "message.answer"
    COMMENT_MODERATE = "comment.moderate"
    REPORT_VIEW = "report.view"
    NOTIFY_BROADCAST = "notify.broadcast"
    STAFF_MANAGE = "staff.manage"
    OUTBOX_ADMIN = "outbox.admin"


STAFF_ROLES = frozenset({Role.DESK, Role.LEADER, Role.ADMIN})

ROLES_WITH: dict[Permission, frozenset[Role]] = {
    Permission.JURISDICTION_READ: STAFF_ROLES,
    Permission.VOLUNTEER_REVIEW: STAFF_ROLES,
    Permission.VOLUNTEER_PII: frozenset({Role.DESK, Role.ADMIN}),
    # Seeing where on-duty volunteers are (masked names, distances): the desk dispatches, leaders
    # look at coverage.
    Permission.VOLUNTEER_LOCATE: STAFF_ROLES,
    Permission.TEAM_MANAGE: STAFF_ROLES,
    Permission.TASK_MANAGE: frozenset({Role.DESK, Role.ADMIN}),
    Permission.CLUE_TRIAGE: frozenset({Role.DESK, Role.ADMIN}),
    Permission.FEED_PUBLISH: frozenset({Role.DESK, Role.ADMIN}),
    Permission.MESSAGE_ANSWER: frozenset({Role.DESK, Role.ADMIN}),
    Permission.COMMENT_MODERATE: frozenset({Role.DESK, Role.ADMIN}),
    Permission.REPORT_VIEW: STAFF_ROLES,
    Permission.NOTIFY_BROADCAST: frozenset({Role.DESK, Role.ADMIN}),
    Permission.STAFF_MANAGE: frozenset({Role.ADMIN}),
    Permission.OUTBOX_ADMIN: frozenset({Role.ADMIN}),
}


@dataclass(frozen=True)
class Grant:
    role: str
    jurisdiction_id: int
    path: str


@dataclass(frozen=True)
class Principal:
    """An authenticated user with the grants that decide what they may do."""

    user_id: int
    kind: str
    grants: tuple[Grant, ...] = field(default_factory=tuple)
    # What /me shows, loaded with the grants so a request reads it once.
    profile: Mapping[str, Any] | None = field(default=None, compare=False, repr=False)
    # The ``/me`` body rendered from exactly this profile, when the token's cache read found one
    # (yijing.services.auth.me_body).
    rendered_me: bytes | None = field(default=None, compare=False, repr=False)

    def has_role(self, role: Role) -> bool:
        return any(g.role == role for g in self.grants)


def scope_paths(principal: Principal, permission: Permission) -> list[str]:
    """The subtree roots where ``principal`` holds ``permission``, without nested duplicates."""
    roles = ROLES_WITH[permission]
    paths = sorted({g.path for g in principal.grants if g.role in roles}, key=lambda p: (len(p), p))
    kept: list[str] = []
    for path in paths:
        if not any(path.startswith(root) for root in kept):
            kept.append(path)
    return sorted(kept)


def may(principal: Principal, permission: Permission, jurisdiction_path: str) -> bool:
    return any(jurisdiction_path.startswith(root) for root in scope_paths(principal, permission))


def require(principal: Principal, permission: Permission, jurisdiction_path: str) -> None:
    """Raise 403 unless ``principal`` holds ``permission`` over the jurisdiction at that path."""
    if not may(principal, permission, jurisdiction_path):
        raise Forbidden("该内容不在您的辖区内，或您没有相应的权限", code="out_of_jurisdiction")


def require_somewhere(principal: Principal, permission: Permission) -> list[str]:
    """Raise 403 unless ``principal`` holds ``permission`` somewhere; return the scope paths."""
    paths = scope_paths(principal, permission)
    if not paths:
        raise Forbidden("您没有相应的权限", code="permission_denied")
    return paths
