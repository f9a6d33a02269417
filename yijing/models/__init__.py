"""Every model, imported so that Alembic and the app see the whole schema."""

from yijing.models.audit import AuditEntry
from yijing.models.broadcast import Broadcast, BroadcastAudience, BroadcastStatus
from yijing.models.clue import (
    CannedReply,
    Clue,
    ClueCategory,
    ClueDuplicateCandidate,
    ClueEvent,
    ClueMessage,
    CluePhoto,
    ClueStatus,
)
from yijing.models.feed import (
    Comment,
    CommentReport,
    CommentStatus,
    CounterFlush,
    Post,
    PostKind,
    PostLike,
    PostStatus,
)
from yijing.models.idempotency import IdempotencyRecord
from yijing.models.jurisdiction import Jurisdiction, JurisdictionLevel
from yijing.models.media import Media, MediaPurpose
from yijing.models.message import Message, MessageReply, MessageStatus
from yijing.models.notification import Notification, NotificationStatus, SealedEnvelope
from yijing.models.points import PointsEntry
from yijing.models.report import (
    ActiveCount,
    DailyHistogram,
    DailyStat,
    ExportKind,
    ExportStatus,
    ReportExport,
    VolunteerDay,
)
from yijing.models.subscription import ConsentAnswer, SubscriptionConsent
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
    CorrectionStatus,
    PrivacyConsent,
    Team,
    Volunteer,
    VolunteerCategory,
    VolunteerCorrection,
    VolunteerNumberCounter,
    VolunteerStatus,
)

__all__ = [
    "ActiveCount",
    "Assignment",
    "AssignmentStatus",
    "AuditEntry",
    "AuthToken",
    "Broadcast",
    "BroadcastAudience",
    "BroadcastStatus",
    "CannedReply",
    "Clue",
    "ClueCategory",
    "ClueDuplicateCandidate",
    "ClueEvent",
    "ClueMessage",
    "CluePhoto",
    "ClueStatus",
    "Comment",
    "CommentReport",
    "CommentStatus",
    "ConsentAnswer",
    "CorrectionStatus",
    "CounterFlush",
    "DailyHistogram",
    "DailyStat",
    "DispatchMode",
    "DispatchRing",
    "ExportKind",
    "ExportStatus",
    "IdempotencyRecord",
    "Jurisdiction",
    "JurisdictionLevel",
    "Media",
    "MediaPurpose",
    "Message",
    "MessageReply",
    "MessageStatus",
    "Notification",
    "NotificationStatus",
    "PointsEntry",
    "Post",
    "PostKind",
    "PostLike",
    "PostStatus",
    "PrivacyConsent",
    "ReportExport",
    "Role",
    "RoleGrant",
    "SealedEnvelope",
    "SubscriptionConsent",
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
    "VolunteerCorrection",
    "VolunteerDay",
    "VolunteerNumberCounter",
    "VolunteerStatus",
]
