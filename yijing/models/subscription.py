"""What each user accepted in ``wx.requestSubscribeMessage``, per subscribe-message template."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from sqlalchemy import ForeignKey, Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from yijing.extensions import db
from yijing.models.base import BigId, TimestampMixin, UTCDateTime


class ConsentAnswer(StrEnum):
    """The values ``wx.requestSubscribeMessage`` reports per template id."""

    ACCEPT = "accept"
    REJECT = "reject"
    BAN = "ban"  # the template was banned by WeChat
    FILTER = "filter"  # the template was filtered out (e.g. a duplicate title in one request)


class SubscriptionConsent(TimestampMixin, db.Model):
    """One-time consents are counted in ``remaining`` (one message each); for a long-term template only
    ``last_answer`` matters."""

    __tablename__ = "subscription_consents"
    __table_args__ = (UniqueConstraint("user_id", "template_id"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    template_id: Mapped[str] = mapped_column(String(64))
    remaining: Mapped[int] = mapped_column(Integer, default=0)
    last_answer: Mapped[str | None] = mapped_column(String(16))
    answered_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
