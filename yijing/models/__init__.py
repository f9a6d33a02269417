"""Every model, imported so that Alembic and the app see the whole schema."""

from yijing.models.audit import AuditEntry
from yijing.models.broadcast import Broadcast, BroadcastAudience, BroadcastStatus
from yijing.models.idempotency import IdempotencyRecord
from yijing.models.jurisdiction import Jurisdiction, JurisdictionLevel
from yijing.models.notification import Notification, NotificationStatus
from yijing.models.points import PointsEntry
from yijing.models.subscription import ConsentAnswer, SubscriptionConsent
from yijing.models.user import AuthToken, Role, RoleGrant, TokenAudience, User, UserKind

__all__ = [
    "AuditEntry",
    "AuthToken",
    "Broadcast",
    "BroadcastAudience",
    "BroadcastStatus",
    "ConsentAnswer",
    "IdempotencyRecord",
    "Jurisdiction",
    "JurisdictionLevel",
    "Notification",
    "NotificationStatus",
    "PointsEntry",
    "Role",
    "RoleGrant",
    "SubscriptionConsent",
    "TokenAudience",
    "User",
    "UserKind",
]
