"""Volunteers (义警), their teams, privacy consents and card numbers.

Personal information (real name, resident ID number, phone) is stored only encrypted with
:mod:`yijing.pii` (``*_enc``), with a keyed blind index for look-ups (``*_hash``) and the mask
that responses show (``*_masked``). No column holds a clear value.

Uniqueness rules enforced by the database (both SQLite and PostgreSQL treat NULLs as distinct):

* ``open_user_id`` is the applicant's user id while the application is open (pending, approved
  or suspended) and NULL once it is closed (rejected, withdrawn): one open application per user.
* ``open_id_number_hash`` is the blind index of the ID number under the same rule: an ID number
  belongs to at most one open application, hence to one user. A closed application releases it,
  so that a person whose number was misused in a rejected application, or who withdrew and comes
  back with a new WeChat account, can still apply (the desk sees the earlier ones by blind index).
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from sqlalchemy import JSON, Boolean, Float, ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from yijing.extensions import db
from yijing.models.base import BigId, TimestampMixin, UTCDateTime
from yijing.models.jurisdiction import Jurisdiction


class VolunteerStatus(StrEnum):
    PENDING = "pending"
    APPROVED = "approved"
    REJECTED = "rejected"
    SUSPENDED = "suspended"
    WITHDRAWN = "withdrawn"


OPEN_STATUSES = frozenset({VolunteerStatus.PENDING, VolunteerStatus.APPROVED, VolunteerStatus.SUSPENDED})


class VolunteerCategory(StrEnum):
    SECURITY_GUARD = "security_guard"
    COURIER = "courier"
    TAXI_DRIVER = "taxi_driver"
    RIDE_HAILING_DRIVER = "ride_hailing_driver"
    FOOD_DELIVERY_RIDER = "food_delivery_rider"
    PROPERTY_STAFF = "property_staff"
    OTHER = "other"


CATEGORY_LABELS: dict[str, str] = {
    VolunteerCategory.SECURITY_GUARD: "保安员",
    VolunteerCategory.COURIER: "快递员",
    VolunteerCategory.TAXI_DRIVER: "出租车司机",
    VolunteerCategory.RIDE_HAILING_DRIVER: "网约车司机",
    VolunteerCategory.FOOD_DELIVERY_RIDER: "外卖骑手",
    VolunteerCategory.PROPERTY_STAFF: "物业人员",
    VolunteerCategory.OTHER: "其他",
}


class Skill(StrEnum):
    FIRST_AID = "first_aid"
    DRIVING = "driving"
    MONGOLIAN = "mongolian"
    FOREIGN_LANGUAGE = "foreign_language"
    SIGN_LANGUAGE = "sign_language"
    FIRE_SAFETY = "fire_safety"
    SWIMMING = "swimming"
    MEDICAL = "medical"
    LEGAL = "legal"
    COUNSELLING = "counselling"
    MARTIAL_ARTS = "martial_arts"
    PHOTOGRAPHY = "photography"


SKILL_LABELS: dict[str, str] = {
    Skill.FIRST_AID: "急救",
    Skill.DRIVING: "驾驶",
    Skill.MONGOLIAN: "蒙古语",
    Skill.FOREIGN_LANGUAGE: "外语",
    Skill.SIGN_LANGUAGE: "手语",
    Skill.FIRE_SAFETY: "消防",
    Skill.SWIMMING: "游泳救生",
    Skill.MEDICAL: "医护",
    Skill.LEGAL: "法律",
    Skill.COUNSELLING: "心理疏导",
    Skill.MARTIAL_ARTS: "武术防身",
    Skill.PHOTOGRAPHY: "摄影摄像",
}


class PrivacyConsent(TimestampMixin, db.Model):
    """A user's consent to a version of a privacy document, with when and from where."""

    __tablename__ = "privacy_consents"
    __table_args__ = (Index("ix_privacy_consents_user_document", "user_id", "document"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    document: Mapped[str] = mapped_column(String(48))
    version: Mapped[str] = mapped_column(String(32))
    ip: Mapped[str | None] = mapped_column(String(64))
    request_id: Mapped[str | None] = mapped_column(String(64))


class Team(TimestampMixin, db.Model):
    """The volunteer team of one community, with its liaison officer and its captain."""

    __tablename__ = "teams"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    jurisdiction_id: Mapped[int] = mapped_column(ForeignKey("jurisdictions.id"), unique=True)
    name: Mapped[str] = mapped_column(String(100))
    # A desk user whose grant covers the community.
    liaison_user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    # The user of an approved volunteer of this team (a user id, so the tables do not refer to
    # each other in a cycle).
    captain_user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    version: Mapped[int] = mapped_column(Integer, default=0)
    updated_at: Mapped[datetime | None] = mapped_column(UTCDateTime())

    community: Mapped[Jurisdiction] = relationship(foreign_keys=[jurisdiction_id])


class Volunteer(TimestampMixin, db.Model):
    """One application to the corps and, once approved, the volunteer it made."""

    __tablename__ = "volunteers"
    __table_args__ = (
        Index("ix_volunteers_created", "created_at", "id"),
        Index("ix_volunteers_decided", "decided_at"),
        Index("ix_volunteers_approved", "approved_at"),
        # The reports' counts by status and category under a node, by an index-only scan.
        Index("ix_volunteers_community_status", "community_id", "status", "category"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    status: Mapped[str] = mapped_column(String(16), index=True)
    category: Mapped[str] = mapped_column(String(32))
    employer: Mapped[str] = mapped_column(String(100), default="")
    skills: Mapped[list[str]] = mapped_column(JSON, default=list)

    real_name_enc: Mapped[str] = mapped_column(String(255))
    name_masked: Mapped[str] = mapped_column(String(64))
    id_number_enc: Mapped[str] = mapped_column(String(255))
    id_number_hash: Mapped[str] = mapped_column(String(64), index=True)
    id_number_masked: Mapped[str] = mapped_column(String(32))
    phone_enc: Mapped[str] = mapped_column(String(255))
    phone_hash: Mapped[str] = mapped_column(String(64), index=True)
    phone_masked: Mapped[str] = mapped_column(String(32))

    # Home: a community or a grid; ``community_id`` is the community itself or the grid's parent.
    jurisdiction_id: Mapped[int] = mapped_column(ForeignKey("jurisdictions.id"), index=True)
    community_id: Mapped[int] = mapped_column(ForeignKey("jurisdictions.id"), index=True)
    team_id: Mapped[int | None] = mapped_column(ForeignKey("teams.id"), index=True)
    consent_id: Mapped[int] = mapped_column(ForeignKey("privacy_consents.id"))
    volunteer_number: Mapped[str | None] = mapped_column(String(32), unique=True)

    # See the module docstring: set while the application is open, NULL once it is closed.
    open_user_id: Mapped[int | None] = mapped_column(BigId, unique=True)
    open_id_number_hash: Mapped[str | None] = mapped_column(String(64), unique=True)

    # Counts decisions; part of each decision's outbox dedupe key.
    decision_seq: Mapped[int] = mapped_column(Integer, default=0)
    decided_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    # When the application was approved (the first approval; a later suspension, reinstatement or
    # withdrawal moves ``decided_at`` but never this): the reports' "newly approved" day.
    approved_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    decided_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    decision_reason: Mapped[str | None] = mapped_column(Text)
    updated_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    # Set once the personal information was erased (retention of a closed application, or the
    # applicant cancelled their account): the *_enc columns then hold empty strings.
    pii_erased_at: Mapped[datetime | None] = mapped_column(UTCDateTime())

    # Duty: the database keeps the state so a lost Redis index can be rebuilt. The location and
    # ``duty_seen_at`` are written at most every DUTY_DB_SYNC_SECONDS; Redis has every ping.
    on_duty: Mapped[bool] = mapped_column(Boolean, default=False, index=True)
    duty_started_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    duty_seen_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    duty_lat: Mapped[float | None] = mapped_column(Float)
    duty_lng: Mapped[float | None] = mapped_column(Float)

    home: Mapped[Jurisdiction] = relationship(foreign_keys=[jurisdiction_id])
    community: Mapped[Jurisdiction] = relationship(foreign_keys=[community_id])
    team: Mapped[Team | None] = relationship(foreign_keys=[team_id])
    consent: Mapped[PrivacyConsent] = relationship(foreign_keys=[consent_id])

    @property
    def is_open(self) -> bool:
        return self.status in OPEN_STATUSES


class VolunteerNumberCounter(db.Model):
    """The last volunteer number handed out in a year (BTYJ-2026-000123)."""

    __tablename__ = "volunteer_number_counters"

    year: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    last: Mapped[int] = mapped_column(Integer, default=0)


class CorrectionStatus(StrEnum):
    PENDING = "pending"
    APPROVED = "approved"
    REJECTED = "rejected"


class VolunteerCorrection(TimestampMixin, db.Model):
    """A volunteer's request to correct their real name, phone or ID number (PIPL art. 46).

    Only the fields asked to change are set; the desk approves or rejects it like an application.
    """

    __tablename__ = "volunteer_corrections"
    __table_args__ = (Index("ix_volunteer_corrections_status", "status", "id"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    volunteer_id: Mapped[int] = mapped_column(ForeignKey("volunteers.id", ondelete="CASCADE"), index=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    status: Mapped[str] = mapped_column(String(16))
    real_name_enc: Mapped[str | None] = mapped_column(String(255))
    name_masked: Mapped[str | None] = mapped_column(String(64))
    id_number_enc: Mapped[str | None] = mapped_column(String(255))
    id_number_hash: Mapped[str | None] = mapped_column(String(64))
    id_number_masked: Mapped[str | None] = mapped_column(String(32))
    phone_enc: Mapped[str | None] = mapped_column(String(255))
    phone_hash: Mapped[str | None] = mapped_column(String(64))
    phone_masked: Mapped[str | None] = mapped_column(String(32))
    note: Mapped[str | None] = mapped_column(Text)
    decided_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    decided_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    decision_reason: Mapped[str | None] = mapped_column(Text)
