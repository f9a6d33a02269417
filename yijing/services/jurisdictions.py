"""The jurisdiction tree: import, look-ups and subtree filters."""

from __future__ import annotations

import csv
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import ColumnElement, false, or_, select
from sqlalchemy.orm import InstrumentedAttribute

from yijing import policies
from yijing.errors import InvalidInput, NotFound
from yijing.extensions import db
from yijing.models import Jurisdiction, JurisdictionLevel
from yijing.models.jurisdiction import LEVEL_DEPTH
from yijing.policies import Permission, Principal

IMPORT_FIELDS = ("key", "parent_key", "name", "level", "code", "lat", "lng")


@dataclass(frozen=True)
class ImportResult:
    created: int
    updated: int


def read_import_file(path: str | Path) -> list[dict[str, Any]]:
    """Nodes from a JSON list or a CSV with the columns of :data:`IMPORT_FIELDS`."""
    path = Path(path)
    text = path.read_text(encoding="utf-8-sig")
    if path.suffix.lower() == ".json":
        nodes = json.loads(text)
        if not isinstance(nodes, list):
            raise InvalidInput("导入文件应为 JSON 数组", code="invalid_import_file")
        return nodes
    if path.suffix.lower() == ".csv":
        return list(csv.DictReader(text.splitlines()))
    raise InvalidInput("只支持 .json 或 .csv 文件", code="invalid_import_file")


def _float_or_none(value: Any, field: str, key: str) -> float | None:
    if value in (None, ""):
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        raise InvalidInput(f"节点 {key} 的 {field} 不是数字", code="invalid_import_file") from None


def import_nodes(nodes: Iterable[dict[str, Any]]) -> ImportResult:
    """Create or update nodes by ``key`` (parents first); all or nothing, in one transaction."""
    created = updated = 0
    by_key = {j.key: j for j in db.session.scalars(select(Jurisdiction))}
    try:
        for index, node in enumerate(nodes, start=1):
            key = str(node.get("key") or "").strip()
            name = str(node.get("name") or "").strip()
            level = str(node.get("level") or "").strip()
            parent_key = str(node.get("parent_key") or "").strip() or None
            if not key or not name:
                raise InvalidInput(f"第 {index} 个节点缺少 key 或 name", code="invalid_import_file")
            if level not in LEVEL_DEPTH:
                raise InvalidInput(f"节点 {key} 的层级 {level!r} 无效", code="invalid_import_file")
            parent = by_key.get(parent_key) if parent_key else None
            if parent_key and parent is None:
                raise InvalidInput(f"节点 {key} 的上级 {parent_key} 不存在", code="invalid_import_file")
            if parent is not None and LEVEL_DEPTH[JurisdictionLevel(parent.level)] >= LEVEL_DEPTH[level]:
                raise InvalidInput(f"节点 {key} 的层级应低于上级", code="invalid_import_file")
            item = by_key.get(key)
            if item is None:
                item = Jurisdiction(key=key, path="", depth=0)
                db.session.add(item)
                by_key[key] = item
                created += 1
            else:
                updated += 1
            item.name = name
            item.level = level
            item.code = str(node.get("code") or "").strip() or None
            item.lat = _float_or_none(node.get("lat"), "lat", key)
            item.lng = _float_or_none(node.get("lng"), "lng", key)
            item.parent_id = parent.id if parent else None
            db.session.flush()
            item.path = (parent.path if parent else "/") + f"{item.id}/"
            item.depth = (parent.depth + 1) if parent else 0
        db.session.commit()
    except Exception:
        db.session.rollback()
        raise
    return ImportResult(created=created, updated=updated)


def get(jurisdiction_id: int) -> Jurisdiction:
    item = db.session.get(Jurisdiction, jurisdiction_id)
    if item is None:
        raise NotFound("辖区不存在", code="jurisdiction_not_found")
    return item


def get_by_key(key: str) -> Jurisdiction:
    item = db.session.scalar(select(Jurisdiction).where(Jurisdiction.key == key))
    if item is None:
        raise NotFound(f"辖区 {key} 不存在", code="jurisdiction_not_found")
    return item


def children(parent_id: int | None) -> Sequence[Jurisdiction]:
    """Direct children (the roots when ``parent_id`` is None), by name."""
    condition = Jurisdiction.parent_id.is_(None) if parent_id is None else Jurisdiction.parent_id == parent_id
    return db.session.scalars(select(Jurisdiction).where(condition).order_by(Jurisdiction.id)).all()


def path_ids(path: str) -> list[int]:
    """The ids a materialised path names, from the root down to the node (``/1/5/23/`` → 1, 5, 23)."""
    return [int(part) for part in path.strip("/").split("/") if part]


def ancestors(item: Jurisdiction) -> Sequence[Jurisdiction]:
    """From the root down to the node's parent."""
    ids = path_ids(item.path)[:-1]
    if not ids:
        return []
    found = {j.id: j for j in db.session.scalars(select(Jurisdiction).where(Jurisdiction.id.in_(ids)))}
    return [found[i] for i in ids if i in found]


def in_subtrees(path_column: InstrumentedAttribute[str], paths: Sequence[str]) -> ColumnElement[bool]:
    """A WHERE clause: the row's jurisdiction path lies under one of ``paths`` (indexed prefix)."""
    if not paths:
        return false()
    return or_(*(path_column.startswith(p, autoescape=True) for p in paths))


def readable_roots(principal: Principal) -> Sequence[Jurisdiction]:
    paths = policies.require_somewhere(principal, Permission.JURISDICTION_READ)
    return db.session.scalars(select(Jurisdiction).where(Jurisdiction.path.in_(paths))).all()


@dataclass(frozen=True, slots=True)
class JurisdictionDetail:
    """A node with its ancestors (root first) and children."""

    id: int
    name: str
    level: str
    parent_id: int | None
    code: str | None
    lat: float | None
    lng: float | None
    ancestors: Sequence[Jurisdiction]
    children: Sequence[Jurisdiction]


def detail_for(principal: Principal, jurisdiction_id: int) -> JurisdictionDetail:
    """A node with ancestors and children, if ``principal`` may read it."""
    item = get(jurisdiction_id)
    policies.require(principal, Permission.JURISDICTION_READ, item.path)
    return JurisdictionDetail(
        id=item.id,
        name=item.name,
        level=item.level,
        parent_id=item.parent_id,
        code=item.code,
        lat=item.lat,
        lng=item.lng,
        ancestors=ancestors(item),
        children=children(item.id),
    )
