"""Comments on feed posts: held until WeChat's content check passes, moderated by the desk, reportable.

A new comment is ``pending_check`` and shown to nobody. A job (:func:`workers.comments.check_comment`)
asks WeChat's ``msg_sec_check`` v2 with the author's openid and scene 2 (comment): ``pass`` makes it
visible, ``risky`` hides it (the author is told), ``review`` sends it to the desk's moderation queue.
When WeChat cannot be reached the job raises and RQ retries it; a sweeper re-enqueues comments still
pending after retries ran out. A comment is therefore never lost and never shown unchecked.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

from rq import Retry
from sqlalchemy import select, update

from yijing import jobs, policies
from yijing.actor import Actor
from yijing.config import settings
from yijing.errors import Conflict, InvalidInput, NotFound
from yijing.extensions import db, wechat
from yijing.models import Comment, CommentReport, CommentStatus, Jurisdiction, Post, User
from yijing.models.base import utcnow
from yijing.pagination import DEFAULT_LIMIT, Page, SortKey, paginate
from yijing.policies import Permission, Principal
from yijing.services import audit, feed, jurisdictions, outbox
from yijing.sql import insert_ignore
from yijing.wechat.errors import WeChatError, WeChatRateLimited, WeChatUnavailable

log = logging.getLogger(__name__)

#: msgSecCheck v2 scene for comments.
SCENE_COMMENT = 2
MAX_LENGTH = 500
#: A comment still pending this long is re-enqueued by the sweeper.
SWEEP_AFTER = timedelta(minutes=10)
_VERDICTS = {"pass": CommentStatus.VISIBLE, "risky": CommentStatus.HIDDEN, "review": CommentStatus.REVIEW}
AUTO_HIDE_REASON = "评论内容未通过内容安全检测，未予显示"


def _check_job(comment_id: int, attempt: str = "") -> jobs.JobSpec:
    return jobs.JobSpec(
        queue=jobs.DEFAULT,
        func="workers.comments.check_comment",
        args=(comment_id,),
        job_id=f"comment-check-{comment_id}{attempt}",
        timeout=30,
        retry=Retry(max=5, interval=[10, 30, 60, 300, 900]),
    )


def _author_name(display_name: str | None) -> str:
    return display_name or "微信用户"


@dataclass(frozen=True, slots=True)
class CommentView:
    """A comment as its author and the post's readers see it."""

    id: int
    post_id: int
    body: str
    status: str
    author_name: str
    created_at: datetime


@dataclass(frozen=True, slots=True)
class DeskComment(CommentView):
    """A comment in the desk's moderation queue: who wrote it, the content check, reports, moderation."""

    user_id: int
    post_title: str
    check_suggest: str | None
    check_label: str | None
    checked_at: datetime | None
    report_count: int
    moderation_reason: str | None
    moderated_at: datetime | None


@dataclass(frozen=True, slots=True)
class ReportReceipt:
    """The answer to a report: always ``reported`` (reporting twice is one report)."""

    reported: bool = True


def _view(comment: Comment, author_name: str | None = None) -> CommentView:
    return CommentView(
        id=comment.id,
        post_id=comment.post_id,
        body=comment.body,
        status=comment.status,
        author_name=_author_name(author_name),
        created_at=comment.created_at,
    )


def create(post_id: int, user_id: int, body: str) -> CommentView:
    """Add a comment to a live post; it is shown once WeChat's content check passes."""
    feed.live_post(post_id)
    body = body.strip()
    if not body:
        raise InvalidInput("评论内容不能为空", code="empty_comment", fields={"body": ["不能为空"]})
    if len(body) > MAX_LENGTH:
        raise InvalidInput(
            f"评论最多 {MAX_LENGTH} 个字",
            code="comment_too_long",
            fields={"body": [f"最多 {MAX_LENGTH} 个字"]},
        )
    comment = Comment(
        post_id=post_id, user_id=user_id, body=body, status=CommentStatus.PENDING_CHECK, report_count=0
    )
    db.session.add(comment)
    db.session.flush()
    jobs.enqueue_after_commit(db.session(), _check_job(comment.id))
    db.session.commit()
    return _view(comment, db.session.scalar(select(User.display_name).where(User.id == user_id)))


def list_for_post(post_id: int, *, cursor: str | None, limit: int = DEFAULT_LIMIT) -> Page[CommentView]:
    """Visible comments on a live post, newest first."""
    feed.live_post(post_id)
    stmt = (
        select(Comment, User.display_name)
        .join(User, User.id == Comment.user_id)
        .where(Comment.post_id == post_id, Comment.status == CommentStatus.VISIBLE)
    )
    page = paginate(
        stmt, [SortKey(Comment.id, True)], lambda row: [row[0].id], cursor=cursor, limit=limit, scalars=False
    )
    return Page(items=[_view(row[0], row[1]) for row in page.items], next_cursor=page.next_cursor)


def _adjust_count(post_id: int, delta: int) -> None:
    if delta:
        db.session.execute(
            update(Post)
            .where(Post.id == post_id)
            .values(comment_count=Post.comment_count + delta)
            .execution_options(synchronize_session=False)
        )


def check(comment_id: int) -> str | None:
    """Run WeChat's content check on a pending comment and apply the verdict; None if not pending.

    Raises :class:`WeChatUnavailable` / :class:`WeChatRateLimited` so that the job is retried; any other
    refusal from WeChat (e.g. the openid is unknown to it) sends the comment to the desk's queue.
    """
    comment = db.session.get(Comment, comment_id)
    if comment is None or comment.status != CommentStatus.PENDING_CHECK:
        return None
    openid = db.session.scalar(select(User.openid).where(User.id == comment.user_id))
    if not openid:
        suggest, label = "review", "no_openid"
    else:
        try:
            answer = wechat().msg_sec_check(openid, comment.body, SCENE_COMMENT)
        except (WeChatUnavailable, WeChatRateLimited):
            raise
        except WeChatError as exc:
            log.warning("msg_sec_check refused; comment goes to review", extra={"comment_id": comment_id})
            suggest, label = "review", f"error:{exc.errcode}"
        else:
            result = answer.get("result") or {}
            suggest, label = str(result.get("suggest") or "review"), str(result.get("label") or "")
    status = _VERDICTS.get(suggest, CommentStatus.REVIEW)
    now = utcnow()
    applied = db.session.execute(
        update(Comment)
        .where(Comment.id == comment_id, Comment.status == CommentStatus.PENDING_CHECK)
        .values(
            status=status,
            check_suggest=suggest,
            check_label=label[:32],
            checked_at=now,
            moderation_reason=AUTO_HIDE_REASON if status == CommentStatus.HIDDEN else None,
        )
        .execution_options(synchronize_session=False)
    ).rowcount
    if not applied:
        db.session.rollback()
        return None
    if status == CommentStatus.VISIBLE:
        _adjust_count(comment.post_id, 1)
    elif status == CommentStatus.HIDDEN:
        outbox.notify(
            comment.user_id,
            "comment.hidden",
            title="您的评论未能发布",
            body=AUTO_HIDE_REASON,
            data={
                "comment_id": comment_id,
                "post_id": comment.post_id,
                "excerpt": comment.body[:20],
                "reason": AUTO_HIDE_REASON,
            },
            page=f"{feed.POST_PAGE}?id={comment.post_id}",
            dedupe_key=f"comment:{comment_id}:check",
        )
    db.session.commit()
    if status == CommentStatus.VISIBLE:
        feed.refresh_details([comment.post_id])
    return status


def sweep_pending(now: datetime | None = None) -> int:
    """Re-enqueue checks of comments still pending (their job was lost or ran out of retries)."""
    now = now or utcnow()
    ids = list(
        db.session.scalars(
            select(Comment.id)
            .where(Comment.status == CommentStatus.PENDING_CHECK, Comment.created_at < now - SWEEP_AFTER)
            .order_by(Comment.created_at)
            .limit(1000)
        )
    )
    bucket = f"-sweep-{int(now.timestamp()) // 600}"
    for comment_id in ids:
        jobs.enqueue(_check_job(comment_id, bucket))
    return len(ids)


def report(comment_id: int, user_id: int, reason: str) -> ReportReceipt:
    """Report a visible comment; reporting twice is one report. Enough reports send it to review."""
    comment = db.session.get(Comment, comment_id)
    if comment is None or comment.status != CommentStatus.VISIBLE:
        raise NotFound("评论不存在或已隐藏", code="comment_not_found")
    if comment.user_id == user_id:
        raise InvalidInput(
            "不能举报自己的评论", code="own_comment", fields={"comment_id": ["不能举报自己的评论"]}
        )
    inserted = insert_ignore(
        db.session(),
        CommentReport,
        {
            "comment_id": comment_id,
            "user_id": user_id,
            "reason": reason.strip()[:200],
            "created_at": utcnow(),
        },
    )
    escalated = False
    if inserted:
        db.session.execute(
            update(Comment)
            .where(Comment.id == comment_id)
            .values(report_count=Comment.report_count + 1)
            .execution_options(synchronize_session=False)
        )
        count = db.session.scalar(select(Comment.report_count).where(Comment.id == comment_id)) or 0
        if count >= settings().comment_report_threshold:
            escalated = bool(
                db.session.execute(
                    update(Comment)
                    .where(Comment.id == comment_id, Comment.status == CommentStatus.VISIBLE)
                    .values(status=CommentStatus.REVIEW)
                    .execution_options(synchronize_session=False)
                ).rowcount
            )
            if escalated:
                _adjust_count(comment.post_id, -1)
    db.session.commit()
    if escalated:
        feed.refresh_details([comment.post_id])
    return ReportReceipt()


# --------------------------------------------------------------------------------------------------
# The desk's moderation queue


def _moderatable(principal: Principal, comment_id: int) -> Comment:
    row = db.session.execute(
        select(Comment, Jurisdiction.path)
        .join(Post, Post.id == Comment.post_id)
        .join(Jurisdiction, Jurisdiction.id == Post.jurisdiction_id)
        .where(Comment.id == comment_id)
    ).first()
    if row is None:
        raise NotFound("评论不存在", code="comment_not_found")
    policies.require(principal, Permission.COMMENT_MODERATE, row[1])
    return row[0]


def desk_view(comment: Comment, post_title: str, author_name: str | None) -> DeskComment:
    return DeskComment(
        id=comment.id,
        post_id=comment.post_id,
        body=comment.body,
        status=comment.status,
        author_name=_author_name(author_name),
        created_at=comment.created_at,
        user_id=comment.user_id,
        post_title=post_title,
        check_suggest=comment.check_suggest,
        check_label=comment.check_label,
        checked_at=comment.checked_at,
        report_count=comment.report_count,
        moderation_reason=comment.moderation_reason,
        moderated_at=comment.moderated_at,
    )


def queue(
    principal: Principal,
    *,
    status: str | None = None,
    reported: bool = False,
    post_id: int | None = None,
    cursor: str | None = None,
    limit: int = DEFAULT_LIMIT,
) -> Page[DeskComment]:
    """Comments on posts in the staff member's scopes, oldest first: by default those awaiting review."""
    paths = policies.require_somewhere(principal, Permission.COMMENT_MODERATE)
    stmt = (
        select(Comment, Post.title, User.display_name)
        .join(Post, Post.id == Comment.post_id)
        .join(Jurisdiction, Jurisdiction.id == Post.jurisdiction_id)
        .join(User, User.id == Comment.user_id)
        .where(jurisdictions.in_subtrees(Jurisdiction.path, paths))
    )
    if reported:
        stmt = stmt.where(Comment.report_count > 0)
    if status:
        stmt = stmt.where(Comment.status == status)
    elif not reported:
        stmt = stmt.where(Comment.status == CommentStatus.REVIEW)
    if post_id is not None:
        stmt = stmt.where(Comment.post_id == post_id)
    page = paginate(
        stmt, [SortKey(Comment.id)], lambda row: [row[0].id], cursor=cursor, limit=limit, scalars=False
    )
    return Page(items=[desk_view(*row) for row in page.items], next_cursor=page.next_cursor)


def _moderate(principal: Principal, actor: Actor, comment_id: int, target: str, reason: str) -> DeskComment:
    comment = _moderatable(principal, comment_id)
    before = comment.status
    now = utcnow()
    comment.status = target
    comment.moderation_reason = reason
    comment.moderated_by_id = principal.user_id
    comment.moderated_at = now
    comment.report_count = 0
    db.session.execute(
        update(CommentReport)
        .where(CommentReport.comment_id == comment_id, CommentReport.resolved_at.is_(None))
        .values(resolved_at=now)
        .execution_options(synchronize_session=False)
    )
    delta = int(target == CommentStatus.VISIBLE) - int(before == CommentStatus.VISIBLE)
    _adjust_count(comment.post_id, delta)
    action = "comment.hide" if target == CommentStatus.HIDDEN else "comment.restore"
    entry = audit.record(actor, action, "comment", comment_id, reason=reason, data={"from": before})
    db.session.flush()
    if before != target:
        outbox.notify(
            comment.user_id,
            action,
            title="您的评论已被隐藏" if target == CommentStatus.HIDDEN else "您的评论已显示",
            body=reason,
            data={
                "comment_id": comment_id,
                "post_id": comment.post_id,
                "excerpt": comment.body[:20],
                "reason": reason,
            },
            page=f"{feed.POST_PAGE}?id={comment.post_id}",
            dedupe_key=f"comment:{comment_id}:moderation:{entry.id}",
        )
    db.session.commit()
    if delta:
        feed.refresh_details([comment.post_id])
    title = db.session.scalar(select(Post.title).where(Post.id == comment.post_id)) or ""
    return desk_view(
        comment, title, db.session.scalar(select(User.display_name).where(User.id == comment.user_id))
    )


def hide(principal: Principal, actor: Actor, comment_id: int, reason: str) -> DeskComment:
    """Hide a comment; the author is told why."""
    comment = _moderatable(principal, comment_id)
    if comment.status == CommentStatus.HIDDEN:
        raise Conflict("评论已是隐藏状态", code="comment_already_hidden")
    return _moderate(principal, actor, comment_id, CommentStatus.HIDDEN, reason)


def restore(principal: Principal, actor: Actor, comment_id: int, reason: str | None) -> DeskComment:
    """Show a comment (approve one under review, restore a hidden one, or dismiss its reports)."""
    comment = _moderatable(principal, comment_id)
    if comment.status == CommentStatus.VISIBLE and comment.report_count == 0:
        raise Conflict("评论已在显示", code="comment_already_visible")
    return _moderate(
        principal, actor, comment_id, CommentStatus.VISIBLE, reason or "经审核，评论内容符合规定"
    )
