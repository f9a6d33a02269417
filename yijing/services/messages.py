"""Messages to the police (留言): a resident writes to their district's police, the desk answers.

A message goes to a district: the one the resident names, else their home district. The desk's inbox
shows the messages of the districts where the staff member holds ``message.answer``, by status
(new → answered → closed). Each reply notifies the resident through the outbox. A question and its
answer become a public Q&A post on the feed only with both consents: the resident's flag on the
message and the desk's decision to publish. Withdrawing the consent withdraws the Q&A post.

Messages are private to the resident and the police, so they are not sent to WeChat's content check;
the desk reviews (and may edit) the text it publishes as a Q&A.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select

from yijing import policies
from yijing.actor import Actor
from yijing.errors import Conflict, InvalidInput, NotFound
from yijing.extensions import db
from yijing.models import Jurisdiction, Message, MessageReply, MessageStatus, Post, PostKind, PostStatus, User
from yijing.models.base import utcnow
from yijing.pagination import DEFAULT_LIMIT, Page, SortKey, paginate
from yijing.policies import Permission, Principal
from yijing.services import audit, feed, jurisdictions, outbox
from yijing.sql import text_matches
from yijing.states import StateMachine

MAX_LENGTH = 1000

STATUS_LABELS = {
    MessageStatus.NEW: "待回复",
    MessageStatus.ANSWERED: "已回复",
    MessageStatus.CLOSED: "已关闭",
}
# A message is answered (again and again) until it is closed; a closed message takes no reply.
STATES = StateMachine(
    "留言",
    {
        MessageStatus.NEW: frozenset({MessageStatus.ANSWERED, MessageStatus.CLOSED}),
        MessageStatus.ANSWERED: frozenset({MessageStatus.ANSWERED, MessageStatus.CLOSED}),
    },
    STATUS_LABELS,
)


@dataclass(frozen=True, slots=True)
class ReplyView:
    """An answer on a message; the resident sees "值班民警" as its author, the desk the officer's name."""

    id: int
    body: str
    created_at: datetime
    author_name: str
    author_id: int


@dataclass(frozen=True, slots=True)
class MessageView:
    """A message in the resident's list: no replies."""

    id: int
    body: str
    status: str
    publish_consent: bool
    district: Jurisdiction
    created_at: datetime
    answered_at: datetime | None
    closed_at: datetime | None
    qa_post_id: int | None


@dataclass(frozen=True, slots=True)
class MessageDetail(MessageView):
    """One of the resident's messages with the police's replies."""

    replies: list[ReplyView]


@dataclass(frozen=True, slots=True)
class DeskMessage(MessageView):
    """A message in the desk's inbox: who wrote it, no replies."""

    user_id: int
    user_name: str


@dataclass(frozen=True, slots=True)
class DeskMessageDetail(DeskMessage):
    """A message as the desk answers it: who wrote it and the replies with their authors."""

    replies: list[ReplyView]


def _replies(message_id: int, *, for_desk: bool) -> list[ReplyView]:
    rows = db.session.execute(
        select(MessageReply, User.display_name)
        .join(User, User.id == MessageReply.author_id)
        .where(MessageReply.message_id == message_id)
        .order_by(MessageReply.id)
    ).all()
    return [
        ReplyView(
            id=reply.id,
            body=reply.body,
            created_at=reply.created_at,
            author_name=(name or "值班民警") if for_desk else "值班民警",
            author_id=reply.author_id,
        )
        for reply, name in rows
    ]


def _fields(message: Message, district: Jurisdiction) -> dict[str, Any]:
    return {
        "id": message.id,
        "body": message.body,
        "status": message.status,
        "publish_consent": bool(message.publish_consent),
        "district": district,
        "created_at": message.created_at,
        "answered_at": message.answered_at,
        "closed_at": message.closed_at,
        "qa_post_id": message.qa_post_id,
    }


def _detail(message: Message, district: Jurisdiction) -> MessageDetail:
    return MessageDetail(**_fields(message, district), replies=_replies(message.id, for_desk=False))


def _desk_item(message: Message, district: Jurisdiction, user_name: str | None) -> DeskMessage:
    return DeskMessage(
        **_fields(message, district), user_id=message.user_id, user_name=user_name or "微信用户"
    )


def _desk_detail(message: Message, district: Jurisdiction, user_name: str | None) -> DeskMessageDetail:
    return DeskMessageDetail(
        **_fields(message, district),
        user_id=message.user_id,
        user_name=user_name or "微信用户",
        replies=_replies(message.id, for_desk=True),
    )


def _clean(body: str, field: str = "body") -> str:
    body = body.strip()
    if not body:
        raise InvalidInput("内容不能为空", code="empty_message", fields={field: ["不能为空"]})
    if len(body) > MAX_LENGTH:
        raise InvalidInput(
            f"最多 {MAX_LENGTH} 个字", code="message_too_long", fields={field: [f"最多 {MAX_LENGTH} 个字"]}
        )
    return body


# --------------------------------------------------------------------------------------------------
# The resident


def create(user_id: int, body: str, *, district_id: int | None, publish_consent: bool) -> MessageDetail:
    """Leave a message for the police of a district (the named one, else the home district)."""
    body = _clean(body)
    if district_id is None:
        home = db.session.scalar(select(User.home_jurisdiction_id).where(User.id == user_id))
        district_id = feed.district_of(home) if home else None
        if district_id is None:
            raise InvalidInput(
                "请先选择留言要发给哪个区（旗县）的民警",
                code="district_required",
                fields={"district_id": ["未设置所在区，请选择"]},
            )
    else:
        feed.require_district(district_id)
    message = Message(
        user_id=user_id,
        jurisdiction_id=district_id,
        body=body,
        status=MessageStatus.NEW,
        publish_consent=publish_consent,
    )
    db.session.add(message)
    db.session.commit()
    return MessageDetail(**_fields(message, db.session.get(Jurisdiction, district_id)), replies=[])


def _own(user_id: int, message_id: int) -> tuple[Message, Jurisdiction]:
    row = db.session.execute(
        select(Message, Jurisdiction)
        .join(Jurisdiction, Jurisdiction.id == Message.jurisdiction_id)
        .where(Message.id == message_id, Message.user_id == user_id)
    ).first()
    if row is None:
        raise NotFound("留言不存在", code="message_not_found")
    return row[0], row[1]


def list_mine(user_id: int, *, cursor: str | None, limit: int = DEFAULT_LIMIT) -> Page[MessageView]:
    """The resident's own messages, newest first."""
    stmt = (
        select(Message, Jurisdiction)
        .join(Jurisdiction, Jurisdiction.id == Message.jurisdiction_id)
        .where(Message.user_id == user_id)
    )
    page = paginate(
        stmt, [SortKey(Message.id, True)], lambda row: [row[0].id], cursor=cursor, limit=limit, scalars=False
    )
    return Page(items=[MessageView(**_fields(m, j)) for m, j in page.items], next_cursor=page.next_cursor)


def get_mine(user_id: int, message_id: int) -> MessageDetail:
    """One of the resident's messages with the police's replies."""
    message, district = _own(user_id, message_id)
    return _detail(message, district)


def set_consent(user_id: int, message_id: int, consent: bool, actor: Actor) -> MessageDetail:
    """Give or take back the consent to publish the message as a Q&A (taking it back withdraws it)."""
    message, district = _own(user_id, message_id)
    message.publish_consent = consent
    qa_post_id = message.qa_post_id
    if not consent and qa_post_id is not None:
        audit.record(actor, "message.consent_withdrawn", "message", message.id)
        feed.withdraw_system(qa_post_id, actor, "留言人撤回了公开同意")  # commits the consent too
    else:
        db.session.commit()
    return _detail(message, district)


# --------------------------------------------------------------------------------------------------
# The desk


def _answerable(principal: Principal, message_id: int) -> tuple[Message, Jurisdiction, str | None]:
    row = db.session.execute(
        select(Message, Jurisdiction, User.display_name)
        .join(Jurisdiction, Jurisdiction.id == Message.jurisdiction_id)
        .join(User, User.id == Message.user_id)
        .where(Message.id == message_id)
    ).first()
    if row is None:
        raise NotFound("留言不存在", code="message_not_found")
    policies.require(principal, Permission.MESSAGE_ANSWER, row[1].path)
    return row[0], row[1], row[2]


def inbox(
    principal: Principal,
    *,
    status: str | None = None,
    q: str | None = None,
    cursor: str | None = None,
    limit: int = DEFAULT_LIMIT,
) -> Page[DeskMessage]:
    """Messages to the districts in the staff member's scopes, newest first."""
    paths = policies.require_somewhere(principal, Permission.MESSAGE_ANSWER)
    stmt = (
        select(Message, Jurisdiction, User.display_name)
        .join(Jurisdiction, Jurisdiction.id == Message.jurisdiction_id)
        .join(User, User.id == Message.user_id)
        .where(jurisdictions.in_subtrees(Jurisdiction.path, paths))
    )
    if status:
        stmt = stmt.where(Message.status == status)
    if (words := text_matches(q, Message.body)) is not None:
        stmt = stmt.where(words)
    page = paginate(
        stmt, [SortKey(Message.id, True)], lambda row: [row[0].id], cursor=cursor, limit=limit, scalars=False
    )
    return Page(items=[_desk_item(*row) for row in page.items], next_cursor=page.next_cursor)


def desk_get(principal: Principal, message_id: int) -> DeskMessageDetail:
    """One message in the staff member's scopes with its replies."""
    message, district, name = _answerable(principal, message_id)
    return _desk_detail(message, district, name)


def reply(principal: Principal, actor: Actor, message_id: int, body: str) -> DeskMessageDetail:
    """Answer a message; the resident is notified."""
    message, district, name = _answerable(principal, message_id)
    STATES.require(message.status, MessageStatus.ANSWERED, action="再回复")
    answer = MessageReply(message_id=message.id, author_id=principal.user_id, body=_clean(body))
    db.session.add(answer)
    db.session.flush()
    message.status = MessageStatus.ANSWERED
    message.answered_at = message.answered_at or utcnow()
    audit.record(actor, "message.reply", "message", message.id, data={"reply_id": answer.id})
    outbox.notify(
        message.user_id,
        "message.reply",
        title="民警回复了您的留言",
        body=answer.body[:200],
        data={
            "message_id": message.id,
            "question": message.body[:60],
            "answered_at": message.answered_at.isoformat(),
        },
        page=f"pages/message/detail/index?id={message.id}",
        dedupe_key=f"message:{message.id}:reply:{answer.id}",
    )
    db.session.commit()
    return _desk_detail(message, district, name)


def close(principal: Principal, actor: Actor, message_id: int, reason: str | None) -> DeskMessageDetail:
    """Close a message (answered, or needing no answer)."""
    message, district, name = _answerable(principal, message_id)
    if message.status != MessageStatus.CLOSED:
        message.status = MessageStatus.CLOSED
        message.closed_at = utcnow()
        audit.record(actor, "message.close", "message", message.id, reason=reason)
        db.session.commit()
    return _desk_detail(message, district, name)


def publish_qa(
    principal: Principal,
    actor: Actor,
    message_id: int,
    *,
    title: str | None = None,
    question: str | None = None,
    answer: str | None = None,
) -> DeskMessageDetail:
    """Publish the question and its answer as a public Q&A post in the message's district.

    Needs the resident's consent on the message and an answer; the desk may edit both texts (to
    take out personal details). The resident is notified.
    """
    message, district, name = _answerable(principal, message_id)
    policies.require(principal, Permission.FEED_PUBLISH, district.path)
    if not message.publish_consent:
        raise Conflict("留言人未同意公开，不能发布为问答", code="no_resident_consent")
    if message.qa_post_id is not None:
        status = db.session.scalar(select(Post.status).where(Post.id == message.qa_post_id))
        if status != PostStatus.WITHDRAWN:
            raise Conflict("该留言已发布为问答", code="qa_already_published")
    last_reply = db.session.scalar(
        select(MessageReply.body)
        .where(MessageReply.message_id == message.id)
        .order_by(MessageReply.id.desc())
        .limit(1)
    )
    if last_reply is None:
        raise Conflict("留言尚未回复，不能发布为问答", code="message_not_answered")
    question_text = _clean(question or message.body, "question")
    answer_text = _clean(answer or last_reply, "answer")
    post = feed.create_live_post(
        kind=PostKind.QA,
        title=(title or f"群众问答：{question_text}").strip()[:100],
        body=f"问：{question_text}\n\n答：{answer_text}",
        jurisdiction_id=district.id,
        author_id=principal.user_id,
        actor=actor,
    )
    message.qa_post_id = post.id
    audit.record(actor, "message.publish_qa", "message", message.id, data={"post_id": post.id})
    outbox.notify(
        message.user_id,
        "message.qa_published",
        title="您的留言已作为问答公开",
        body=post.title,
        data={"message_id": message.id, "post_id": post.id},
        page=f"{feed.POST_PAGE}?id={post.id}",
        dedupe_key=f"message:{message.id}:qa:{post.id}",
    )
    db.session.commit()
    feed.after_publish(post.id)
    return _desk_detail(message, district, name)
