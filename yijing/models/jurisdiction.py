"""The jurisdiction tree: city › district › street › community › grid."""

from __future__ import annotations

from enum import StrEnum

from sqlalchemy import Float, ForeignKey, Index, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from yijing.extensions import db
from yijing.models.base import BigId, TimestampMixin


class JurisdictionLevel(StrEnum):
    CITY = "city"
    DISTRICT = "district"
    STREET = "street"
    COMMUNITY = "community"
    GRID = "grid"


LEVEL_DEPTH = {level: depth for depth, level in enumerate(JurisdictionLevel)}


class Jurisdiction(TimestampMixin, db.Model):
    """A node of the tree. ``path`` (``/1/5/23/``) makes a subtree one indexed prefix match."""

    __tablename__ = "jurisdictions"
    __table_args__ = (Index("ix_jurisdictions_path", "path", postgresql_ops={"path": "varchar_pattern_ops"}),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    parent_id: Mapped[int | None] = mapped_column(ForeignKey("jurisdictions.id"), index=True)
    key: Mapped[str] = mapped_column(String(64), unique=True)
    code: Mapped[str | None] = mapped_column(String(32))
    name: Mapped[str] = mapped_column(String(100))
    level: Mapped[str] = mapped_column(String(16))
    depth: Mapped[int] = mapped_column(Integer)
    path: Mapped[str] = mapped_column(String(255))
    lat: Mapped[float | None] = mapped_column(Float)
    lng: Mapped[float | None] = mapped_column(Float)

    def contains(self, other: Jurisdiction) -> bool:
        """True when ``other`` is this node or lies below it."""
        return other.path.startswith(self.path)


LEVEL_LABELS: dict[str, str] = {
    JurisdictionLevel.CITY: "市",
    JurisdictionLevel.DISTRICT: "旗县区",
    JurisdictionLevel.STREET: "苏木乡镇/街道",
    JurisdictionLevel.COMMUNITY: "嘎查村/社区",
    JurisdictionLevel.GRID: "网格",
}
