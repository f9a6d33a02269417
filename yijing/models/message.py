"""Messages to the police (留言): a resident writes to their district's police; the desk replies."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from sqlalchemy import Boolean, ForeignKey, Index, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from yijing.extensions import db
from yijing.models.base import BigId, TimestampMixin, UTCDateTime


class MessageStatus(StrEnum):
    NEW = "new"
    ANSWERED = "answered"
    CLOSED = "closed"


class Message(TimestampMixin, db.Model):
    __tablename__ = "messages"
    __table_args__ = (
        Index("ix_messages_user", "user_id", "id"),
        Index("ix_messages_inbox", "jurisdiction_id", "status", "id"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    # The district whose police receive it.
    jurisdiction_id: Mapped[int] = mapped_column(ForeignKey("jurisdictions.id"))
    body: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(16), default=MessageStatus.NEW)
    # The resident agrees that the question and its answer may be published as a public Q&A.
    publish_consent: Mapped[bool] = mapped_column(Boolean, default=False)
    answered_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    closed_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    # The public Q&A post, once the desk published one (with the resident's consent).
    qa_post_id: Mapped[int | None] = mapped_column(ForeignKey("posts.id"))


class MessageReply(TimestampMixin, db.Model):
    __tablename__ = "message_replies"
    __table_args__ = (Index("ix_message_replies_message", "message_id", "id"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    message_id: Mapped[int] = mapped_column(ForeignKey("messages.id", ondelete="CASCADE"))
    author_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    body: Mapped[str] = mapped_column(Text)
