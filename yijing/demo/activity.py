"""A month of demo activity for a laptop run, so every page of the desk console shows something.

On top of ``seed-demo`` (the tree and the demo staff): volunteers (some applications waiting), tasks
past and upcoming with check-ins, and clues over the last 30 days in 昆都仑区 and 青山区 (the synthetic
generator), volunteers on duty around their communities, clues with photos in several states, posts
(one scheduled), comments waiting for moderation, residents' messages, and the report rollups.
Runs once: a second call finds the volunteers and does nothing.
"""

from __future__ import annotations

import io
import random
from collections.abc import Iterator
from datetime import timedelta

from sqlalchemy import func, select

from yijing.actor import Actor
from yijing.demo import datagen
from yijing.extensions import db
from yijing.models import Jurisdiction, User, Volunteer
from yijing.models.base import utcnow
from yijing.models.feed import Comment, CommentStatus
from yijing.models.volunteer import VolunteerStatus
from yijing.services import (
    auth,
    clues,
    comments,
    duty,
    feed,
    jurisdictions,
    media,
    messages,
    rollups,
)

DISTRICTS = ("150203", "150204")
CLUE_TEXTS = [
    ("suspicious_person", "小区门口有陌生人反复查看电动车", True),
    ("fraud", "接到自称客服的电话要求转账退款", False),
    ("safety_hazard", "楼道里堆放大量纸箱，存在消防隐患", False),
    ("suspicious_vehicle", "一辆无牌面包车连续三晚停在学校门口", True),
    ("dispute", "两户邻居因停车位发生争吵", False),
]


def _photo(seed: int) -> bytes:
    from PIL import Image, ImageDraw

    image = Image.new("RGB", (480, 320), (60 + seed * 30 % 160, 90, 120))
    draw = ImageDraw.Draw(image)
    for i in range(6):
        draw.rectangle((40 + i * 60, 200 - i * 20, 80 + i * 60, 300), fill=(200, 200 - i * 20, 160))
    out = io.BytesIO()
    image.save(out, "JPEG", quality=80)
    return out.getvalue()


def load_activity(seed: int = 7) -> Iterator[str]:
    if db.session.scalar(select(func.count(Volunteer.id))):
        yield "activity: volunteers exist already, nothing added"
        return
    rng = random.Random(seed)
    for offset, key in enumerate(DISTRICTS):
        district = jurisdictions.get_by_key(key)
        result = datagen.generate(
            150, 900, 120, days=30, seed=seed + offset, root_path=district.path, residents=80
        )
        yield (
            f"activity: {district.name}: {result.volunteers} volunteers, {result.tasks} tasks, "
            f"{result.clues} clues"
        )

    # On duty around their communities (the GEO index the dispatch searches).
    approved = db.session.execute(
        select(Volunteer.user_id, Jurisdiction.lat, Jurisdiction.lng)
        .join(Jurisdiction, Jurisdiction.id == Volunteer.community_id)
        .where(Volunteer.status == VolunteerStatus.APPROVED)
        .order_by(Volunteer.id)
        .limit(60)
    ).all()
    for row in approved:
        duty.set_duty(
            row.user_id,
            True,
            (row.lat or 40.65) + rng.uniform(-0.006, 0.006),
            (row.lng or 109.84) + rng.uniform(-0.008, 0.008),
        )
    yield f"activity: {len(approved)} volunteers on duty"

    # Clues with photos, reported by residents of 昆都仑区's communities.
    residents = list(
        db.session.scalars(
            select(User.id).where(User.kind == "wechat").order_by(User.id).limit(len(CLUE_TEXTS))
        )
    )
    centre = jurisdictions.get_by_key("150203")
    for i, ((category, text, urgent), user_id) in enumerate(zip(CLUE_TEXTS, residents, strict=False)):
        principal = auth.load_principal(user_id)
        photo, _ = media.upload(principal, "clue", _photo(i))
        clues.submit(
            user_id,
            category=category,
            description=text,
            lat=(centre.lat or 40.65) + rng.uniform(-0.01, 0.01),
            lng=(centre.lng or 109.83) + rng.uniform(-0.01, 0.01),
            address="昆都仑区",
            anonymous=i % 2 == 0,
            urgent=urgent,
            photos=[photo.key],
        )
    yield f"activity: {len(CLUE_TEXTS)} clues with photos"

    # Posts (one scheduled for tomorrow), comments waiting for moderation, messages.
    desk = db.session.scalar(select(User.id).where(User.username == "desk-kdl"))
    if desk is not None:
        principal, actor = auth.load_principal(desk), Actor.system("demo")
        posts = [
            ("anti_fraud", "警惕冒充客服退款诈骗", "凡是要求转账、提供验证码的“客服”都是骗子。"),
            ("notice", "昆都仑区义警冬季巡逻安排", "12 月起各社区义警夜间巡逻改为 18:00–21:00。"),
            ("case_report", "沼潭派出所破获一起盗窃电动车案", "感谢义警队员提供线索。"),
        ]
        live = []
        for kind, title, body in posts:
            made = feed.create_post(
                principal, actor, {"kind": kind, "title": title, "body": body, "jurisdiction_id": centre.id}
            )
            live.append(feed.publish_post(principal, actor, made.id, publish_at=None, push=False).id)
        later = feed.create_post(
            principal,
            actor,
            {
                "kind": "notice",
                "title": "周末社区反诈讲座",
                "body": "周六上午九点，沼潭社区活动室。",
                "jurisdiction_id": centre.id,
            },
        )
        feed.publish_post(principal, actor, later.id, publish_at=utcnow() + timedelta(days=1), push=False)
        for user_id, body in zip(
            residents, ["这个提醒很及时", "这条需要待审一下", "希望多组织讲座"], strict=False
        ):
            created = comments.create(live[0], user_id, body)
            db.session.get(Comment, created.id).status = CommentStatus.REVIEW  # as if WeChat were unsure
        db.session.commit()
        for user_id, body in zip(
            residents, ["小区路灯坏了好几天", "想咨询义警报名条件", "楼下夜里很吵"], strict=False
        ):
            messages.create(user_id, body, district_id=centre.id, publish_consent=True)
        yield "activity: 4 posts (1 scheduled), 3 comments to moderate, 3 messages"

    today = rollups.local_today()
    rollups.rebuild(today - timedelta(days=31), today)
    yield "activity: report rollups of the last 31 days"
