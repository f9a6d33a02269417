"""One table of the Chinese label of every code the desk API returns.

The desk console shows labels, never codes; an integrator reads the same table from
``GET /api/v1/desk/labels``. Labels already defined beside their models or services are gathered
here so there is one place to look them up (:func:`label`).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

from yijing.models.broadcast import BroadcastAudience, BroadcastStatus
from yijing.models.clue import CATEGORY_LABELS as CLUE_CATEGORY_LABELS
from yijing.models.clue import STATUS_LABELS as CLUE_STATUS_LABELS
from yijing.models.clue import ClueEventKind, MessageSender
from yijing.models.feed import CommentStatus, PostKind, PostStatus
from yijing.models.jurisdiction import LEVEL_LABELS as JURISDICTION_LEVEL_LABELS
from yijing.models.message import MessageStatus
from yijing.models.notification import NotificationStatus
from yijing.models.report import ExportKind, ExportStatus
from yijing.models.task import KIND_LABELS as TASK_KIND_LABELS
from yijing.models.user import Role
from yijing.models.volunteer import CATEGORY_LABELS as VOLUNTEER_CATEGORY_LABELS
from yijing.models.volunteer import SKILL_LABELS

ROLE_LABELS: dict[str, str] = {
    Role.RESIDENT: "群众",
    Role.VOLUNTEER: "义警",
    Role.DESK: "值班民警",
    Role.LEADER: "社区/街道负责人",
    Role.ADMIN: "管理员",
}

POST_KIND_LABELS: dict[str, str] = {
    PostKind.NOTICE: "通知",
    PostKind.ALERT: "紧急预警",
    PostKind.ANTI_FRAUD: "反诈提示",
    PostKind.WANTED: "通缉协查",
    PostKind.CASE_REPORT: "案件通报",
    PostKind.QA: "留言问答",
}

POST_STATUS_LABELS: dict[str, str] = {
    PostStatus.DRAFT: "草稿",
    PostStatus.SCHEDULED: "定时发布",
    PostStatus.PUBLISHED: "已发布",
    PostStatus.WITHDRAWN: "已撤回",
}

COMMENT_STATUS_LABELS: dict[str, str] = {
    CommentStatus.PENDING_CHECK: "内容检测中",
    CommentStatus.REVIEW: "待审核",
    CommentStatus.VISIBLE: "已显示",
    CommentStatus.HIDDEN: "已隐藏",
}

MESSAGE_STATUS_LABELS: dict[str, str] = {
    MessageStatus.NEW: "待回复",
    MessageStatus.ANSWERED: "已回复",
    MessageStatus.CLOSED: "已关闭",
}

BROADCAST_STATUS_LABELS: dict[str, str] = {
    BroadcastStatus.QUEUED: "排队中",
    BroadcastStatus.RUNNING: "发送中",
    BroadcastStatus.COMPLETED: "已完成",
    BroadcastStatus.CANCELLED: "已取消",
    BroadcastStatus.FAILED: "失败",
}

BROADCAST_AUDIENCE_LABELS: dict[str, str] = {
    BroadcastAudience.VOLUNTEERS: "辖区义警",
    BroadcastAudience.RESIDENTS: "辖区群众",
    BroadcastAudience.ON_DUTY: "附近在岗义警",
}

EXPORT_STATUS_LABELS: dict[str, str] = {
    ExportStatus.QUEUED: "排队中",
    ExportStatus.RUNNING: "生成中",
    ExportStatus.DONE: "已完成",
    ExportStatus.FAILED: "失败",
}

EXPORT_KIND_LABELS: dict[str, str] = {
    ExportKind.SUMMARY: "概况",
    ExportKind.SERIES: "趋势",
    ExportKind.COVERAGE: "覆盖情况",
    ExportKind.LEADERBOARD: "排行榜",
    ExportKind.ROSTER: "义警名册",
}

NOTIFICATION_STATUS_LABELS: dict[str, str] = {
    NotificationStatus.PENDING: "待发送",
    NotificationStatus.SENT: "已发送",
    NotificationStatus.INBOX_ONLY: "仅站内",
    NotificationStatus.FAILED: "发送失败",
}

CLUE_EVENT_LABELS: dict[str, str] = {
    ClueEventKind.SUBMITTED: "提交",
    ClueEventKind.STATUS: "状态变更",
    ClueEventKind.ASSIGNED: "指定处理人",
    ClueEventKind.URGENCY: "紧急程度",
    ClueEventKind.DUPLICATE_LINKED: "标记重复",
    ClueEventKind.CONTENT_FLAGGED: "内容待审",
}

# What the audit trail shows (volunteer history, staff changes …).
AUDIT_ACTION_LABELS: dict[str, str] = {
    "volunteer.apply": "提交申请",
    "volunteer.update": "修改申请",
    "volunteer.withdraw": "退出",
    "volunteer.approve": "审核通过",
    "volunteer.reject": "审核不通过",
    "volunteer.suspend": "暂停",
    "volunteer.reinstate": "恢复",
    "volunteer.read_pii": "查看明文信息",
    "volunteer.export_pii": "导出明文信息",
    "staff.create": "创建工作人员账号",
    "staff.activate": "启用账号",
    "staff.deactivate": "停用账号",
    "staff.password_reset": "重置密码",
    "staff.force_password_change": "要求修改密码",
    "staff.password_change": "修改密码",
    "staff.login": "登录",
    "role.grant": "授权",
    "role.revoke": "撤销授权",
}

MESSAGE_SENDER_LABELS: dict[str, str] = {MessageSender.DESK: "民警", MessageSender.REPORTER: "举报人"}


def _service_tables() -> dict[str, dict[str, str]]:
    # Imported late: the services import models that import this module's neighbours.
    from yijing.services.clues import TRANSFER_LABELS
    from yijing.services.tasks import ASSIGNMENT_STATUS_LABELS, MODE_LABELS, TASK_STATUS_LABELS
    from yijing.services.volunteers import STATUS_LABELS as VOLUNTEER_STATUS_LABELS

    return {
        "volunteer_status": dict(VOLUNTEER_STATUS_LABELS),
        "task_status": dict(TASK_STATUS_LABELS),
        "assignment_status": dict(ASSIGNMENT_STATUS_LABELS),
        "dispatch_mode": dict(MODE_LABELS),
        "transfer_target": dict(TRANSFER_LABELS),
    }


@functools.cache
def tables() -> dict[str, dict[str, str]]:
    """Every label table by name: ``{"clue_status": {"submitted": "待受理", ...}, ...}``."""
    data = {
        "jurisdiction_level": JURISDICTION_LEVEL_LABELS,
        "role": ROLE_LABELS,
        "clue_category": CLUE_CATEGORY_LABELS,
        "clue_status": CLUE_STATUS_LABELS,
        "clue_event": CLUE_EVENT_LABELS,
        "clue_sender": MESSAGE_SENDER_LABELS,
        "audit_action": AUDIT_ACTION_LABELS,
        "volunteer_category": VOLUNTEER_CATEGORY_LABELS,
        "volunteer_skill": SKILL_LABELS,
        "task_kind": TASK_KIND_LABELS,
        "post_kind": POST_KIND_LABELS,
        "post_status": POST_STATUS_LABELS,
        "comment_status": COMMENT_STATUS_LABELS,
        "message_status": MESSAGE_STATUS_LABELS,
        "broadcast_status": BROADCAST_STATUS_LABELS,
        "broadcast_audience": BROADCAST_AUDIENCE_LABELS,
        "export_status": EXPORT_STATUS_LABELS,
        "export_kind": EXPORT_KIND_LABELS,
        "notification_status": NOTIFICATION_STATUS_LABELS,
        **_service_tables(),
    }
    return {name: {str(code): text for code, text in table.items()} for name, table in data.items()}


def label(table: str, code: str | None) -> str | None:
    """The label of ``code`` in ``table``; the code itself when it has none (never an error)."""
    if code is None:
        return None
    return tables().get(table, {}).get(str(code), str(code))


@dataclass(frozen=True, slots=True)
class LabelTables:
    tables: dict[str, dict[str, str]]  # table name → code → Chinese label (the keys are data)


def label_tables() -> LabelTables:
    """``GET /api/v1/desk/labels``: every table of :func:`tables`."""
    return LabelTables(tables=tables())
