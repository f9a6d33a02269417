"""Patrol tasks, their recurring series, the volunteers on them, dispatch rings and track points.

* :class:`Task` — one patrol (or campus guard, event, search…) in a jurisdiction, at a place with
  a geofence, in a time window, with ``slots`` places. ``filled`` counts the volunteers holding a
  place (accepted, checked in or completed); it only changes through conditional UPDATEs
  (``filled < slots``), so concurrent acceptances never overfill a task.
* :class:`TaskSeries` — a recurrence rule ("every school day 07:30–08:30 at this gate") whose
  occurrences a scheduled job creates ahead of time (unique per series and date).
* :class:`Assignment` — one volunteer on one task (unique per task and volunteer), from the
  invitation to the check-out; it keeps the check-in/check-out locations and service minutes.
* :class:`DispatchRing` — one ring of a nearby dispatch: the radius searched and when it went out.
* :class:`TrackPoint` — a location uploaded while on patrol (unique per assignment and client time).
"""

from __future__ import annotations

from datetime import date, datetime
from enum import StrEnum

from sqlalchemy import (
    JSON,
    Boolean,
    Date,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from yijing.extensions import db
from yijing.models.base import BigId, TimestampMixin, UTCDateTime
from yijing.models.jurisdiction import Jurisdiction
from yijing.models.volunteer import Volunteer


class TaskKind(StrEnum):
    PATROL = "patrol"
    CAMPUS_GUARD = "campus_guard"
    EVENT_SECURITY = "event_security"
    MISSING_PERSON = "missing_person"
    TRAFFIC = "traffic"
    OTHER = "other"


KIND_LABELS: dict[str, str] = {
    TaskKind.PATROL: "巡逻",
    TaskKind.CAMPUS_GUARD: "护校安园",
    TaskKind.EVENT_SECURITY: "活动安保",
    TaskKind.MISSING_PERSON: "寻人搜救",
    TaskKind.TRAFFIC: "交通疏导",
    TaskKind.OTHER: "其他",
}


class TaskStatus(StrEnum):
    DRAFT = "draft"
    PUBLISHED = "published"
    IN_PROGRESS = "in_progress"
    COMPLETED = "completed"  # the window ended and at least one volunteer served (checked in)
    UNSERVED = "unserved"  # the window ended and nobody served: no volunteer checked in
    CANCELLED = "cancelled"


# The outcomes of a task whose window ended (as opposed to a cancelled one).
ENDED_STATUSES = frozenset({TaskStatus.COMPLETED, TaskStatus.UNSERVED})


class DispatchMode(StrEnum):
    OPEN = "open"  # eligible volunteers sign up until the slots are full
    ASSIGNED = "assigned"  # the desk names volunteers, who accept or decline
    NEARBY = "nearby"  # the nearest on-duty volunteers are invited ring by ring


class AssignmentStatus(StrEnum):
    INVITED = "invited"
    ACCEPTED = "accepted"
    DECLINED = "declined"
    EXPIRED = "expired"
    CANCELLED = "cancelled"
    CHECKED_IN = "checked_in"
    COMPLETED = "completed"
    NO_SHOW = "no_show"


# The statuses that hold one of the task's slots (what ``Task.filled`` counts).
HOLDS_SLOT = frozenset({AssignmentStatus.ACCEPTED, AssignmentStatus.CHECKED_IN, AssignmentStatus.COMPLETED})


class SeriesStatus(StrEnum):
    ACTIVE = "active"
    ENDED = "ended"


class TaskSeries(TimestampMixin, db.Model):
    """A recurring task: the template of its occurrences and the rule that places them."""

    __tablename__ = "task_series"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    jurisdiction_id: Mapped[int] = mapped_column(ForeignKey("jurisdictions.id"), index=True)
    created_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    status: Mapped[str] = mapped_column(String(16), default=SeriesStatus.ACTIVE)
    kind: Mapped[str] = mapped_column(String(32))
    title: Mapped[str] = mapped_column(String(100))
    description: Mapped[str] = mapped_column(Text, default="")
    lat: Mapped[float] = mapped_column(Float)
    lng: Mapped[float] = mapped_column(Float)
    address: Mapped[str] = mapped_column(String(200), default="")
    geofence_radius_m: Mapped[int] = mapped_column(Integer)
    route: Mapped[list[list[float]] | None] = mapped_column(JSON)
    slots: Mapped[int] = mapped_column(Integer)
    categories: Mapped[list[str]] = mapped_column(JSON, default=list)
    skills: Mapped[list[str]] = mapped_column(JSON, default=list)
    points: Mapped[int] = mapped_column(Integer, default=0)
    # The rule, in Asia/Shanghai local time: ISO weekdays (1 = Monday), a daily window, the first
    # and (optionally) last date, and dates to skip (holidays).
    weekdays: Mapped[list[int]] = mapped_column(JSON)
    start_time: Mapped[str] = mapped_column(String(5))  # "07:30"
    end_time: Mapped[str] = mapped_column(String(5))  # "08:30"
    starts_on: Mapped[date] = mapped_column(Date)
    ends_on: Mapped[date | None] = mapped_column(Date)
    skip_dates: Mapped[list[str]] = mapped_column(JSON, default=list)
    # Occurrences exist up to and including this date.
    generated_through: Mapped[date | None] = mapped_column(Date)
    ended_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    updated_at: Mapped[datetime | None] = mapped_column(UTCDateTime())

    jurisdiction: Mapped[Jurisdiction] = relationship(foreign_keys=[jurisdiction_id])


class Task(TimestampMixin, db.Model):
    __tablename__ = "tasks"
    __table_args__ = (
        UniqueConstraint("series_id", "occurrence_date"),
        Index("ix_tasks_open", "dispatch_mode", "status", "ends_at"),
        Index("ix_tasks_jurisdiction_starts", "jurisdiction_id", "starts_at"),
        Index("ix_tasks_starts", "starts_at", "id"),
        Index("ix_tasks_status_ends", "status", "ends_at"),
        Index("ix_tasks_dispatch_next", "dispatch_next_at"),
        # The reports count a task's outcome on the day it was closed or cancelled.
        Index("ix_tasks_closed", "closed_at"),
        Index("ix_tasks_cancelled", "cancelled_at"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    jurisdiction_id: Mapped[int] = mapped_column(ForeignKey("jurisdictions.id"))
    series_id: Mapped[int | None] = mapped_column(ForeignKey("task_series.id"))
    occurrence_date: Mapped[date | None] = mapped_column(Date)
    created_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    kind: Mapped[str] = mapped_column(String(32))
    title: Mapped[str] = mapped_column(String(100))
    description: Mapped[str] = mapped_column(Text, default="")
    lat: Mapped[float] = mapped_column(Float)
    lng: Mapped[float] = mapped_column(Float)
    address: Mapped[str] = mapped_column(String(200), default="")
    geofence_radius_m: Mapped[int] = mapped_column(Integer)
    # [[lat, lng], ...] of a patrol route; check-in counts the distance to it as well.
    route: Mapped[list[list[float]] | None] = mapped_column(JSON)
    starts_at: Mapped[datetime] = mapped_column(UTCDateTime())
    ends_at: Mapped[datetime] = mapped_column(UTCDateTime())
    slots: Mapped[int] = mapped_column(Integer)
    filled: Mapped[int] = mapped_column(Integer, default=0)
    categories: Mapped[list[str]] = mapped_column(JSON, default=list)
    skills: Mapped[list[str]] = mapped_column(JSON, default=list)
    points: Mapped[int] = mapped_column(Integer, default=0)
    dispatch_mode: Mapped[str] = mapped_column(String(16), default=DispatchMode.OPEN)
    status: Mapped[str] = mapped_column(String(16), default=TaskStatus.DRAFT)
    published_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    cancelled_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    cancel_reason: Mapped[str | None] = mapped_column(Text)
    closed_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    updated_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    # Nearby dispatch: the last ring sent (0 = none yet), when the next one is due (NULL: none
    # due — filled, exhausted or not a nearby task), and when the largest radius was reached.
    dispatch_ring: Mapped[int] = mapped_column(Integer, default=0)
    dispatch_next_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    dispatch_exhausted_at: Mapped[datetime | None] = mapped_column(UTCDateTime())

    jurisdiction: Mapped[Jurisdiction] = relationship(foreign_keys=[jurisdiction_id])
    series: Mapped[TaskSeries | None] = relationship(foreign_keys=[series_id])

    @property
    def remaining(self) -> int:
        return max(0, self.slots - self.filled)


class DispatchRing(TimestampMixin, db.Model):
    """One ring of a nearby dispatch: who within ``radius_m`` was invited, and when."""

    __tablename__ = "dispatch_rings"
    __table_args__ = (UniqueConstraint("task_id", "ring_no"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    task_id: Mapped[int] = mapped_column(ForeignKey("tasks.id", ondelete="CASCADE"))
    ring_no: Mapped[int] = mapped_column(Integer)
    radius_m: Mapped[int] = mapped_column(Integer)
    # On-duty volunteers found inside the radius, and how many of them were invited.
    found: Mapped[int] = mapped_column(Integer, default=0)
    invited: Mapped[int] = mapped_column(Integer, default=0)
    slots_open: Mapped[int] = mapped_column(Integer, default=0)
    # When the next ring goes out if the slots are still not filled (NULL for the last ring).
    next_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class Assignment(TimestampMixin, db.Model):
    __tablename__ = "assignments"
    __table_args__ = (
        UniqueConstraint("task_id", "volunteer_id"),
        Index("ix_assignments_user", "user_id", "id"),
        Index("ix_assignments_volunteer", "volunteer_id", "id"),
        Index("ix_assignments_status_expires", "status", "invite_expires_at"),
        Index("ix_assignments_task_status", "task_id", "status"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    task_id: Mapped[int] = mapped_column(ForeignKey("tasks.id", ondelete="CASCADE"))
    volunteer_id: Mapped[int] = mapped_column(ForeignKey("volunteers.id"))
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    status: Mapped[str] = mapped_column(String(16))
    # How the volunteer came to the task: open (signed up), assigned (named by the desk), nearby.
    source: Mapped[str] = mapped_column(String(16))
    ring_id: Mapped[int | None] = mapped_column(ForeignKey("dispatch_rings.id"), index=True)
    distance_m: Mapped[float | None] = mapped_column(Float)  # from the task place when invited
    invited_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    invite_seq: Mapped[int] = mapped_column(Integer, default=0)
    invited_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    invite_expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    invite_reminded_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    responded_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    accepted_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    decline_reason: Mapped[str | None] = mapped_column(String(200))
    cancelled_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    cancelled_by: Mapped[str | None] = mapped_column(String(16))  # volunteer | desk | task
    cancel_reason: Mapped[str | None] = mapped_column(Text)
    reminded_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    checkin_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    checkin_lat: Mapped[float | None] = mapped_column(Float)
    checkin_lng: Mapped[float | None] = mapped_column(Float)
    checkin_accuracy_m: Mapped[float | None] = mapped_column(Float)
    checkin_distance_m: Mapped[float | None] = mapped_column(Float)
    checkout_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    checkout_lat: Mapped[float | None] = mapped_column(Float)
    checkout_lng: Mapped[float | None] = mapped_column(Float)
    checkout_accuracy_m: Mapped[float | None] = mapped_column(Float)
    checkout_distance_m: Mapped[float | None] = mapped_column(Float)
    # Closed by the end-of-window job instead of the volunteer's own check-out.
    checkout_auto: Mapped[bool] = mapped_column(Boolean, default=False)
    service_minutes: Mapped[int | None] = mapped_column(Integer)
    points_awarded: Mapped[int] = mapped_column(Integer, default=0)
    updated_at: Mapped[datetime | None] = mapped_column(UTCDateTime())

    task: Mapped[Task] = relationship(foreign_keys=[task_id])
    volunteer: Mapped[Volunteer] = relationship(foreign_keys=[volunteer_id])
    ring: Mapped[DispatchRing | None] = relationship(foreign_keys=[ring_id])

    @property
    def response_seconds(self) -> float | None:
        """Seconds from the invitation to the answer (accept or decline)."""
        if self.invited_at is None or self.responded_at is None:
            return None
        return round((self.responded_at - self.invited_at).total_seconds(), 1)


class TrackPoint(db.Model):
    """A location uploaded while on patrol; ``recorded_at`` is the phone's clock."""

    __tablename__ = "track_points"
    __table_args__ = (UniqueConstraint("assignment_id", "recorded_at"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    assignment_id: Mapped[int] = mapped_column(ForeignKey("assignments.id", ondelete="CASCADE"))
    recorded_at: Mapped[datetime] = mapped_column(UTCDateTime())
    lat: Mapped[float] = mapped_column(Float)
    lng: Mapped[float] = mapped_column(Float)
    accuracy_m: Mapped[float | None] = mapped_column(Float)
    received_at: Mapped[datetime] = mapped_column(UTCDateTime())
