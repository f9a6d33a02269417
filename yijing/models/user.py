"""People: mini-program users (one per openid) and staff (one per login), their roles and tokens."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from sqlalchemy import Boolean, ForeignKey, String, UniqueConstraint, false
from sqlalchemy.orm import Mapped, mapped_column

from yijing.extensions import db
from yijing.models.base import BigId, TimestampMixin, UTCDateTime


class UserKind(StrEnum):
    WECHAT = "wechat"
    STAFF = "staff"


class Role(StrEnum):
    RESIDENT = "resident"
    VOLUNTEER = "volunteer"
    DESK = "desk"
    LEADER = "leader"
    ADMIN = "admin"


class TokenAudience(StrEnum):
    MINIPROGRAM = "miniprogram"
    DESK = "desk"


class User(TimestampMixin, db.Model):
    __tablename__ = "users"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    kind: Mapped[str] = mapped_column(String(16))
    openid: Mapped[str | None] = mapped_column(String(64), unique=True)
    unionid: Mapped[str | None] = mapped_column(String(64))
    username: Mapped[str | None] = mapped_column(String(64), unique=True)
    password_hash: Mapped[str | None] = mapped_column(String(255))
    display_name: Mapped[str] = mapped_column(String(64), default="")
    # Encrypted with yijing.pii; the hash is a keyed blind index for look-ups.
    phone_enc: Mapped[str | None] = mapped_column(String(255))
    phone_hash: Mapped[str | None] = mapped_column(String(64), index=True)
    session_key_enc: Mapped[str | None] = mapped_column(String(255))
    home_jurisdiction_id: Mapped[int | None] = mapped_column(ForeignKey("jurisdictions.id"))
    is_active: Mapped[bool] = mapped_column(Boolean, default=True)
    # Set when an admin creates the account or resets its password: the desk refuses everything but
    # the password change until the user picks their own.
    must_change_password: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    last_login_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    # Account cancellation (注销): asked for, carried out once ``cancel_due_at`` has passed (a login
    # before then withdraws it), and done (the row is kept as a bare id so that figures add up).
    cancel_requested_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    cancel_due_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), index=True)
    cancelled_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class RoleGrant(TimestampMixin, db.Model):
    """A role held over a jurisdiction and its whole subtree."""

    __tablename__ = "role_grants"
    __table_args__ = (UniqueConstraint("user_id", "role", "jurisdiction_id"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    role: Mapped[str] = mapped_column(String(16))
    jurisdiction_id: Mapped[int] = mapped_column(ForeignKey("jurisdictions.id"))
    granted_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))


class AuthToken(TimestampMixin, db.Model):
    """A bearer token; only its SHA-256 is stored."""

    __tablename__ = "auth_tokens"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    audience: Mapped[str] = mapped_column(String(16))
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime())
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
