"""Every model, imported so that Alembic and the app see the whole schema."""

from yijing.models.audit import AuditEntry
from yijing.models.idempotency import IdempotencyRecord
from yijing.models.jurisdiction import Jurisdiction, JurisdictionLevel
from yijing.models.notification import Notification, NotificationStatus
from yijing.models.points import PointsEntry
from yijing.models.task import (
    Assignment,
    AssignmentStatus,
    DispatchMode,
    DispatchRing,
    Task,
    TaskKind,
    TaskSeries,
    TaskStatus,
    TrackPoint,
)
from yijing.models.user import AuthToken, Role, RoleGrant, TokenAudience, User, UserKind
from yijing.models.volunteer import (
    PrivacyConsent,
    Team,
    Volunteer,
    VolunteerCategory,
    VolunteerNumberCounter,
    VolunteerStatus,
)

__all__ = [
    "Assignment",
    "AssignmentStatus",
    "AuditEntry",
    "AuthToken",
    "DispatchMode",
    "DispatchRing",
    "IdempotencyRecord",
    "Jurisdiction",
    "JurisdictionLevel",
    "Notification",
    "NotificationStatus",
    "PointsEntry",
    "PrivacyConsent",
    "Role",
    "RoleGrant",
    "Task",
    "TaskKind",
    "TaskSeries",
    "TaskStatus",
    "Team",
    "TokenAudience",
    "TrackPoint",
    "User",
    "UserKind",
    "Volunteer",
    "VolunteerCategory",
    "VolunteerNumberCounter",
    "VolunteerStatus",
]
