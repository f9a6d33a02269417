"""What the jobs do after a clue is committed: the content check, duplicate matching, the sweeper's list."""

from __future__ import annotations

import logging
import math
from datetime import timedelta

from rq import Retry
from sqlalchemy import select

from yijing import jobs
from yijing.config import settings
from yijing.extensions import db, wechat
from yijing.geo import haversine_m
from yijing.jobs import JobSpec
from yijing.models import (
    Clue,
    ClueDuplicateCandidate,
    ClueEvent,
    User,
)
from yijing.models.base import utcnow
from yijing.models.clue import (
    OPEN_STATUSES,
    ClueEventKind,
    ContentFlag,
)
from yijing.services.clues.common import CONTENT_CHECK_MAX_CHARS, CONTENT_CHECK_SCENE, reporter_user_id
from yijing.sql import insert_ignore
from yijing.wechat.errors import WeChatError, WeChatRateLimited, WeChatUnavailable

log = logging.getLogger(__name__)


def followup_jobs(clue_id: int) -> list[JobSpec]:
    """The jobs every new clue needs: the text check and duplicate matching (each idempotent)."""
    retry = Retry(max=3, interval=[10, 30, 60])
    return [
        JobSpec(
            queue=jobs.DEFAULT,
            func="workers.clues.check_content",
            args=(clue_id,),
            job_id=f"clue-content-{clue_id}",
            timeout=30,
            retry=retry,
            failure_ttl=3600,
        ),
        JobSpec(
            queue=jobs.DEFAULT,
            func="workers.clues.match_duplicates",
            args=(clue_id,),
            job_id=f"clue-duplicates-{clue_id}",
            timeout=30,
            retry=retry,
            failure_ttl=3600,
        ),
    ]


def check_content(clue_id: int) -> str | None:
    """Run WeChat's text check on a clue and record the verdict; never hides or drops the clue.

    Clues about drugs, gambling or fraud are exactly what the check calls risky, so a verdict only
    flags the clue for the desk. WeChat being unreachable raises (the job retries); a refusal
    (e.g. the reporter's openid is not recent enough) is recorded as ``skipped``.
    """
    clue = db.session.get(Clue, clue_id)
    if clue is None or clue.content_checked_at is not None:
        return None
    reporter = reporter_user_id(clue)
    user = db.session.get(User, reporter) if reporter is not None else None
    flag, label = ContentFlag.SKIPPED, None
    if user is not None and user.openid:
        text = "\n".join(filter(None, [clue.description, clue.address]))[:CONTENT_CHECK_MAX_CHARS]
        try:
            result = wechat().msg_sec_check(user.openid, text, CONTENT_CHECK_SCENE)
        except (WeChatUnavailable, WeChatRateLimited):
            raise
        except WeChatError as exc:
            log.warning("clue content check refused", extra={"clue_id": clue.id, "errcode": exc.errcode})
        else:
            verdict = result.get("result") or {}
            suggest = verdict.get("suggest")
            # An answer this code does not know is left to a person rather than passed.
            flag = ContentFlag(suggest) if suggest in {"pass", "review", "risky"} else ContentFlag.REVIEW
            label = verdict.get("label")
    clue.content_flag = flag
    clue.content_label = int(label) if label is not None else None
    clue.content_checked_at = utcnow()
    if flag in (ContentFlag.REVIEW, ContentFlag.RISKY):
        db.session.add(
            ClueEvent(
                clue_id=clue.id,
                kind=ClueEventKind.CONTENT_FLAGGED,
                internal_note=f"内容安全检测结果为 {flag}（标签 {label}），请人工研判；线索照常处理。",
                data={"flag": str(flag), "label": label},
            )
        )
    db.session.commit()
    return flag


def match_duplicates(clue_id: int) -> int:
    """Store open clues of the same category nearby and close in time as possible duplicates."""
    clue = db.session.get(Clue, clue_id)
    if clue is None or clue.duplicates_checked_at is not None:
        return 0
    config = settings()
    radius = config.clue_duplicate_radius_m
    window = timedelta(hours=config.clue_duplicate_window_hours)
    d_lat = radius / 111_320
    d_lng = radius / (111_320 * max(math.cos(math.radians(clue.lat)), 0.01))
    nearby = db.session.scalars(
        select(Clue).where(
            Clue.category == clue.category,
            Clue.id != clue.id,
            Clue.status.in_(sorted(OPEN_STATUSES)),
            Clue.created_at >= clue.created_at - window,
            Clue.created_at <= clue.created_at + window,
            Clue.lat.between(clue.lat - d_lat, clue.lat + d_lat),
            Clue.lng.between(clue.lng - d_lng, clue.lng + d_lng),
        )
    ).all()
    rows = []
    for other in nearby:
        distance = haversine_m(clue.lat, clue.lng, other.lat, other.lng)
        if distance <= radius:
            for a, b in ((clue.id, other.id), (other.id, clue.id)):
                rows.append(
                    {"clue_id": a, "candidate_id": b, "distance_m": round(distance), "created_at": utcnow()}
                )
    if rows:
        insert_ignore(db.session(), ClueDuplicateCandidate, rows)
    clue.duplicates_checked_at = utcnow()
    db.session.commit()
    return len(rows) // 2


def unfinished_followups(min_age: timedelta, max_age: timedelta, limit: int = 500) -> list[JobSpec]:
    """Jobs for clues whose check or matching never ran (Redis was down, a worker died)."""
    now = utcnow()
    window = (Clue.created_at <= now - min_age, Clue.created_at >= now - max_age)
    specs: list[JobSpec] = []
    unchecked = db.session.scalars(
        select(Clue.id).where(Clue.content_checked_at.is_(None), *window).order_by(Clue.id).limit(limit)
    ).all()
    unmatched = db.session.scalars(
        select(Clue.id).where(Clue.duplicates_checked_at.is_(None), *window).order_by(Clue.id).limit(limit)
    ).all()
    for clue_id in unchecked:
        specs.append(followup_jobs(clue_id)[0])
    for clue_id in unmatched:
        specs.append(followup_jobs(clue_id)[1])
    db.session.rollback()
    return specs
