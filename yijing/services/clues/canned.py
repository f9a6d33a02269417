"""Canned replies (常用回复): the texts a desk picks from, shared down the jurisdiction tree."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import or_, select

from yijing import policies
from yijing.actor import Actor
from yijing.errors import NotFound
from yijing.extensions import db
from yijing.models import (
    CannedReply,
    Jurisdiction,
)
from yijing.policies import Permission, Principal
from yijing.services import audit
from yijing.services import jurisdictions as jurisdiction_service


def _ancestor_paths(path: str) -> list[str]:
    parts = path.strip("/").split("/")
    return ["/" + "/".join(parts[: i + 1]) + "/" for i in range(len(parts))]


def canned_replies(principal: Principal) -> Sequence[CannedReply]:
    """Replies set up in the staff member's subtrees or above them (a city-wide reply too)."""
    paths = policies.require_somewhere(principal, Permission.CLUE_TRIAGE)
    above = sorted({p for path in paths for p in _ancestor_paths(path)})
    return db.session.scalars(
        select(CannedReply)
        .join(Jurisdiction, Jurisdiction.id == CannedReply.jurisdiction_id)
        .where(or_(jurisdiction_service.in_subtrees(Jurisdiction.path, paths), Jurisdiction.path.in_(above)))
        .order_by(Jurisdiction.depth, CannedReply.title, CannedReply.id)
    ).all()


def canned_reply(principal: Principal, reply_id: int) -> CannedReply:
    found = db.session.get(CannedReply, reply_id)
    if found is None or found.id not in {r.id for r in canned_replies(principal)}:
        raise NotFound("常用回复不存在", code="canned_reply_not_found")
    return found


def create_canned_reply(
    principal: Principal, actor: Actor, *, jurisdiction_id: int, title: str, body: str
) -> CannedReply:
    target = jurisdiction_service.get(jurisdiction_id)
    policies.require(principal, Permission.CLUE_TRIAGE, target.path)
    reply = CannedReply(
        jurisdiction_id=target.id, title=title.strip(), body=body.strip(), created_by_id=principal.user_id
    )
    db.session.add(reply)
    db.session.flush()
    audit.record(actor, "clue.canned_reply.create", "canned_reply", reply.id)
    db.session.commit()
    return reply


def _editable_reply(principal: Principal, reply_id: int) -> CannedReply:
    reply = canned_reply(principal, reply_id)
    policies.require(principal, Permission.CLUE_TRIAGE, jurisdiction_service.get(reply.jurisdiction_id).path)
    return reply


def update_canned_reply(
    principal: Principal, actor: Actor, reply_id: int, *, title: str | None = None, body: str | None = None
) -> CannedReply:
    reply = _editable_reply(principal, reply_id)
    if title is not None:
        reply.title = title.strip()
    if body is not None:
        reply.body = body.strip()
    audit.record(actor, "clue.canned_reply.update", "canned_reply", reply.id)
    db.session.commit()
    return reply


def delete_canned_reply(principal: Principal, actor: Actor, reply_id: int) -> None:
    reply = _editable_reply(principal, reply_id)
    db.session.delete(reply)
    audit.record(actor, "clue.canned_reply.delete", "canned_reply", reply_id)
    db.session.commit()
