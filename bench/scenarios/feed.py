"""Feed benchmarks (issue 6): the first feed page, anonymous and logged in, over 10,000 posts and
10,000 comments; and a like burst of 10,000 likes on one post from 1,000 users, checked for the
exact count.

Everything here is plain functions, so they can be called without the harness:

* :func:`seed` (idempotent) puts the data in the database the app uses: Baotou's districts under
  the benchmark city every scenario shares (``bench/scenarios/city.py``), a desk author, 1,000
  mini-program users with bearer tokens (written straight to the database, so the login rate limit
  does not get in the way), 10,000 posts over the city and the districts (a few pinned, a few
  withdrawn or scheduled) and 10,000 visible comments.
* :func:`like_burst` sends the likes over HTTP from a thread pool and times them.
* :func:`check_like_count` checks the count three ways: the API, the ``post_likes`` rows, and
  ``posts.like_count`` after the counter flush job.

With the harness in ``bench/`` (``bench.harness``), ``SCENARIO`` is a self-measuring scenario:
register it by adding ``feed`` to ``_MODULES`` in ``bench/scenarios/__init__.py``. Its rows:
``feed:anonymous`` and ``feed:logged_in`` (wrk on ``GET /api/v1/feed``, ratios to the constant
baseline of the same run) and ``feed:like_burst`` (likes/s, p50/p99 per like; its ``extra`` holds the
three counts, and a count other than 1,000 fails the run).

Standalone, against an app that is already running::

    python -m bench.scenarios.feed --app-url http://127.0.0.1:8000 \
        --database-url postgresql+psycopg://postgres@127.0.0.1:5432/yijing_bench --redis-url redis://127.0.0.1:6379/13
"""

from __future__ import annotations

import argparse
import hashlib
import json
import random
import statistics
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import requests

POSTS = 10_000
COMMENTS = 10_000
USERS = 1_000
LIKES = 10_000
SEED_MARKER = "bench-feed-seed"
TOKEN_PREFIX = "yjm_benchfeed_"
#: Where the logged-in reader lives (昆都仑区): their feed merges the city's and this district's pages.
HOME_DISTRICT = "150203"

#: Baotou's districts, under the shared benchmark city (their keys are the district codes).
BAOTOU = [
    ("150202", "东河区"),
    ("150203", "昆都仑区"),
    ("150204", "青山区"),
    ("150205", "石拐区"),
    ("150206", "白云鄂博矿区"),
    ("150207", "九原区"),
    ("150221", "土默特右旗"),
    ("150222", "固阳县"),
    ("150223", "达尔罕茂明安联合旗"),
]
#: The city node older versions of this scenario created; its posts are moved to the shared city.
OLD_CITY_KEY = "150200"
KINDS = ["notice", "alert", "anti_fraud", "wanted", "case_report"]


@dataclass
class SeedInfo:
    city_id: int
    district_ids: dict[str, int]
    user_ids: list[int]
    tokens: list[str]
    posts: int
    comments: int


@dataclass
class BurstResult:
    likes: int
    seconds: float
    latencies_ms: list[float] = field(repr=False)
    statuses: dict[int, int]

    @property
    def rate(self) -> float:
        return self.likes / self.seconds if self.seconds else 0.0

    def percentile(self, p: float) -> float:
        data = sorted(self.latencies_ms)
        if not data:
            return 0.0
        return data[min(len(data) - 1, max(0, round(p / 100 * len(data)) - 1))]


def bench_app(database_url: str, redis_url: str, **env: str) -> Any:
    """The Yijing app on the benchmark's database and Redis (for seeding and checks in-process)."""
    from yijing import create_app
    from yijing.config import Config

    return create_app(
        Config.from_env({"DATABASE_URL": database_url, "REDIS_URL": redis_url, "LOG_LEVEL": "WARNING", **env})
    )


def _token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def seed(
    database_url: str,
    redis_url: str,
    *,
    posts: int = POSTS,
    comments: int = COMMENTS,
    users: int = USERS,
    app: Any = None,
) -> SeedInfo:
    """Seed the feed once (a second call finds the marker and only reads what it needs)."""
    from sqlalchemy import func, insert, select, update

    from bench.scenarios.city import CITY_KEY, ensure_city
    from yijing.actor import Actor
    from yijing.extensions import db
    from yijing.models import AuthToken, Comment, Jurisdiction, Post, Role, RoleGrant, User, UserKind
    from yijing.services import auth, jurisdictions

    app = app or bench_app(database_url, redis_url)
    rng = random.Random(6)
    with app.app_context():
        city_id = ensure_city()
        jurisdictions.import_nodes(
            [{"key": k, "parent_key": CITY_KEY, "name": n, "level": "district", "code": k} for k, n in BAOTOU]
        )
        old_city = db.session.scalar(select(Jurisdiction.id).where(Jurisdiction.key == OLD_CITY_KEY))
        if old_city is not None:  # a database seeded before the shared city: its posts move over
            db.session.execute(
                update(Post).where(Post.jurisdiction_id == old_city).values(jurisdiction_id=city_id)
            )
            db.session.commit()
        district_ids = {
            j.key: j.id
            for j in db.session.scalars(
                select(Jurisdiction).where(Jurisdiction.key.in_([b[0] for b in BAOTOU]))
            )
        }
        author = db.session.scalar(select(User).where(User.username == "bench-feed-desk"))
        if author is None:
            author = auth.create_staff("bench-feed-desk", "bench-feed-desk-password", "压测值班台")
        if not db.session.scalar(
            select(func.count())
            .select_from(RoleGrant)
            .where(RoleGrant.user_id == author.id, RoleGrant.jurisdiction_id == city_id)
        ):
            auth.grant_role(author.id, Role.DESK, city_id, Actor.system("bench"))
        seeded = db.session.scalar(select(func.count()).select_from(Post).where(Post.title == SEED_MARKER))
        now = datetime.now(UTC)
        tokens = [f"{TOKEN_PREFIX}{i:05d}" for i in range(users)]
        if not seeded:
            homes = list(district_ids.values())
            home = district_ids[HOME_DISTRICT]
            db.session.execute(
                insert(User),
                [
                    {
                        "kind": UserKind.WECHAT,
                        "openid": f"bench-feed-{i:05d}",
                        "display_name": f"压测用户{i}",
                        "home_jurisdiction_id": home if i == 0 else rng.choice(homes),
                        "is_active": True,
                        "created_at": now,
                    }
                    for i in range(users)
                ],
            )
            user_ids = list(
                db.session.scalars(
                    select(User.id).where(User.openid.like("bench-feed-%")).order_by(User.openid)
                )
            )
            db.session.execute(
                insert(AuthToken),
                [
                    {
                        "token_hash": _token_hash(token),
                        "user_id": user_id,
                        "audience": "miniprogram",
                        "expires_at": now + timedelta(days=365),
                        "created_at": now,
                    }
                    for token, user_id in zip(tokens, user_ids, strict=True)
                ],
            )
            scopes = [city_id, *homes]
            rows = []
            for i in range(posts):
                published_at = now - timedelta(minutes=posts - i)
                status = "published"
                if i % 500 == 7:
                    status = "withdrawn"
                elif i % 1000 == 3:
                    status, published_at = "scheduled", now + timedelta(days=1, minutes=i)
                rows.append(
                    {
                        "kind": KINDS[i % len(KINDS)],
                        "title": SEED_MARKER if i == 0 else f"压测动态 {i}：请广大市民注意防范电信网络诈骗",
                        "body": "近期我市发生多起冒充客服、冒充公检法的电信网络诈骗案件。" * 6,
                        "images": [f"https://media.example.cn/feed/{i}.jpg"] if i % 3 == 0 else [],
                        "jurisdiction_id": scopes[i % len(scopes)],
                        "status": status,
                        "pinned": i in (posts - 50, posts - 400),
                        "published_at": published_at,
                        "push_requested": False,
                        "author_id": author.id,
                        "view_count": rng.randint(0, 5000),
                        "like_count": 0,
                        "comment_count": 0,
                        "created_at": now,
                    }
                )
            for start in range(0, len(rows), 1000):
                db.session.execute(insert(Post), rows[start : start + 1000])
            post_ids = list(
                db.session.scalars(
                    select(Post.id).where(Post.status == "published").order_by(Post.id.desc()).limit(2000)
                )
            )
            counts: dict[int, int] = {}
            crows = []
            for i in range(comments):
                post_id = rng.choice(post_ids[:200]) if i % 2 else rng.choice(post_ids)
                counts[post_id] = counts.get(post_id, 0) + 1
                crows.append(
                    {
                        "post_id": post_id,
                        "user_id": rng.choice(user_ids),
                        "body": f"压测评论 {i}，提醒家人注意防范",
                        "status": "visible",
                        "check_suggest": "pass",
                        "report_count": 0,
                        "created_at": now,
                    }
                )
            for start in range(0, len(crows), 1000):
                db.session.execute(insert(Comment), crows[start : start + 1000])
            from sqlalchemy import bindparam

            table = Post.__table__
            db.session.execute(
                update(table).where(table.c.id == bindparam("b_id")).values(comment_count=bindparam("b_n")),
                [{"b_id": k, "b_n": v} for k, v in counts.items()],
            )
            db.session.commit()
            _forget_feed_cache()
        user_ids = list(
            db.session.scalars(select(User.id).where(User.openid.like("bench-feed-%")).order_by(User.openid))
        )
        total_posts = db.session.scalar(select(func.count()).select_from(Post))
        total_comments = db.session.scalar(select(func.count()).select_from(Comment))
        db.session.remove()
    return SeedInfo(city_id, district_ids, user_ids, tokens[: len(user_ids)], total_posts, total_comments)


def _forget_feed_cache() -> None:
    """Drop cached feed pages, details and areas (needs an app context)."""
    from yijing.extensions import redis_client, redis_key

    client = redis_client()
    keys = list(client.scan_iter(match=redis_key("feed", "*"), count=1000))
    for start in range(0, len(keys), 500):
        client.delete(*keys[start : start + 500])


def create_burst_post(app_url: str, city_id: int, session: requests.Session | None = None) -> int:
    """A fresh city-wide post for the like burst, through the desk API; returns its id."""
    session = session or requests.Session()
    login = session.post(
        app_url + "/api/v1/desk/auth/login",
        json={"username": "bench-feed-desk", "password": "bench-feed-desk-password"},
        timeout=10,
    )
    login.raise_for_status()
    headers = {"Authorization": f"Bearer {login.json()['token']}"}
    created = session.post(
        app_url + "/api/v1/desk/posts",
        json={"kind": "notice", "title": "点赞压测", "body": "点赞压测", "jurisdiction_id": city_id},
        headers=headers,
        timeout=10,
    )
    created.raise_for_status()
    post_id = created.json()["id"]
    session.post(
        app_url + f"/api/v1/desk/posts/{post_id}/publish", json={}, headers=headers, timeout=10
    ).raise_for_status()
    return post_id


def like_burst(
    app_url: str,
    tokens: list[str],
    post_id: int,
    *,
    likes: int = LIKES,
    concurrency: int = 32,
    seed_: int = 6,
) -> BurstResult:
    """Send ``likes`` likes on ``post_id`` spread evenly over ``tokens`` in a shuffled order."""
    order = [tokens[i % len(tokens)] for i in range(likes)]
    random.Random(seed_).shuffle(order)
    local = threading.local()
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    lock = threading.Lock()

    def one(token: str) -> None:
        session = getattr(local, "session", None)
        if session is None:
            session = local.session = requests.Session()
        t0 = time.perf_counter()
        response = session.post(
            app_url + f"/api/v1/feed/{post_id}/like", headers={"Authorization": f"Bearer {token}"}, timeout=30
        )
        elapsed = (time.perf_counter() - t0) * 1000
        with lock:
            latencies.append(elapsed)
            statuses[response.status_code] = statuses.get(response.status_code, 0) + 1

    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=concurrency) as pool:
        list(pool.map(one, order))
    return BurstResult(
        likes=likes, seconds=time.perf_counter() - started, latencies_ms=latencies, statuses=statuses
    )


def check_like_count(
    app_url: str, database_url: str, redis_url: str, post_id: int, *, app: Any = None
) -> dict[str, int]:
    """The like count as the API shows it, as rows, and in ``posts.like_count`` after the flush job."""
    from sqlalchemy import func, select

    from yijing.extensions import db
    from yijing.models import Post, PostLike
    from yijing.services import feed

    api = requests.get(app_url + f"/api/v1/feed/{post_id}", timeout=10).json()["like_count"]
    app = app or bench_app(database_url, redis_url)
    with app.app_context():
        rows = db.session.scalar(
            select(func.count()).select_from(PostLike).where(PostLike.post_id == post_id)
        )
        feed.flush_counters()
        stored = db.session.scalar(select(Post.like_count).where(Post.id == post_id))
        db.session.remove()
    api_after = requests.get(app_url + f"/api/v1/feed/{post_id}", timeout=10).json()["like_count"]
    return {"api": api, "rows": rows, "stored_after_flush": stored, "api_after_flush": api_after}


def first_page_requests(app_url: str, info: SeedInfo) -> dict[str, tuple[str, dict[str, str]]]:
    """What wrk sends for the two first-page rows: (path, headers)."""
    return {
        "feed:anonymous": ("/api/v1/feed", {}),
        "feed:logged_in": ("/api/v1/feed", {"Authorization": f"Bearer {info.tokens[0]}"}),
    }


FILLER_TITLE = "压测填充动态"


def size_posts(total: int, *, app: Any) -> int:
    """Make the database hold ``total`` posts: filler posts (published, older than every other
    post, so the first page does not change) are added with one ``INSERT … SELECT
    generate_series`` or the newest fillers removed. Returns the number of posts now."""
    from sqlalchemy import func, select, text

    from yijing.extensions import db
    from yijing.models import Post, User

    with app.app_context():
        have = db.session.scalar(select(func.count()).select_from(Post))
        if have < total:
            author = db.session.scalar(select(User.id).where(User.username == "bench-feed-desk"))
            oldest = db.session.scalar(select(func.min(Post.published_at)))
            scopes = sorted(set(db.session.scalars(select(Post.jurisdiction_id).distinct())))
            db.session.execute(
                text(
                    "INSERT INTO posts (kind, title, body, images, jurisdiction_id, status, pinned,"
                    " published_at, push_requested, author_id, view_count, like_count, comment_count,"
                    " created_at)"
                    " SELECT (CAST(:kinds AS text[]))[1 + i % 5], :title, :body, CAST('[]' AS json),"
                    " (CAST(:scopes AS bigint[]))[1 + i % :n_scopes], 'published', false,"
                    " :oldest - make_interval(mins => i), false, :author, i % 5000, 0, 0, now()"
                    " FROM generate_series(1, :missing) AS i"
                ),
                {
                    "kinds": KINDS,
                    "title": FILLER_TITLE,
                    "body": "近期我市发生多起冒充客服、冒充公检法的电信网络诈骗案件，请广大市民提高警惕。",
                    "scopes": scopes,
                    "n_scopes": len(scopes),
                    "oldest": oldest,
                    "author": author,
                    "missing": total - have,
                },
            )
        elif have > total:
            db.session.execute(
                text(
                    "DELETE FROM posts WHERE id IN"
                    " (SELECT id FROM posts WHERE title = :title ORDER BY id DESC LIMIT :excess)"
                ),
                {"title": FILLER_TITLE, "excess": have - total},
            )
        db.session.commit()
        if have != total:
            db.session.execute(text("ANALYZE posts"))
            db.session.commit()
        now = db.session.scalar(select(func.count()).select_from(Post))
        db.session.remove()
    return now


def first_page_rows(ctx: Any, info: SeedInfo) -> list[Any]:
    """The two first-page rows (anonymous, logged in), each checked for a full page, then wrk."""
    from bench.harness import BenchError, Request

    rows = []
    for label, (path, headers) in first_page_requests(ctx.app_url, info).items():
        check = ctx.session.get(ctx.url(path), headers=headers, timeout=10)
        if check.status_code != 200 or len(check.json().get("items", [])) != 20:
            raise BenchError(f"{label}: GET {path} answered {check.status_code}: {check.text[:300]}")
        row = ctx.measure_http(label, Request(path=path, headers=headers))
        row.baseline = "baseline:constant"
        rows.append(row)
    return rows


class FeedScenario:
    """Self-measuring: two wrk runs (first page, anonymous and logged in) and the like burst."""

    name = "feed"
    description = "GET /api/v1/feed (anonymous, logged in) over 10,000 posts; like burst 10,000 × 1,000 users"
    needs_app = True

    def run(self, ctx: Any) -> list[Any]:
        from bench.harness import BenchError, Result

        app = bench_app(ctx.database_url, ctx.redis_url)
        info = seed(ctx.database_url, ctx.redis_url, app=app)
        rows = first_page_rows(ctx, info)
        post_id = create_burst_post(ctx.app_url, info.city_id, ctx.session)
        burst = like_burst(ctx.app_url, info.tokens, post_id, concurrency=ctx.connections)
        counts = check_like_count(ctx.app_url, ctx.database_url, ctx.redis_url, post_id, app=app)
        expected = len(set(info.tokens))
        if burst.statuses.get(200) != burst.likes or set(counts.values()) != {expected}:
            raise BenchError(
                f"feed:like_burst: expected exactly {expected} likes, got {counts} ({burst.statuses})"
            )
        rows.append(
            Result(
                scenario="feed:like_burst",
                rps=burst.rate,
                p50_ms=burst.percentile(50),
                p99_ms=burst.percentile(99),
                kind="python",
                target=f"POST /api/v1/feed/{{id}}/like ×{burst.likes} from {expected} users",
                requests=burst.likes,
                extra={"counts": counts, "statuses": burst.statuses},
            )
        )
        return rows


SCENARIO = FeedScenario()


def _growth_first_page(ctx: Any, size: int) -> list[Any]:
    """Growth mode: the first page (anonymous, logged in) with ``size`` posts in the database."""
    app = bench_app(ctx.database_url, ctx.redis_url)
    info = seed(ctx.database_url, ctx.redis_url, app=app)
    posts = size_posts(size, app=app)
    rows = first_page_rows(ctx, info)
    for row in rows:
        row.extra["posts"] = posts
    return rows


def _growth() -> list[Any]:
    from bench.harness import Growth

    return [Growth("feed_first_page", "posts", (10_000, 100_000, 1_000_000), _growth_first_page)]


GROWTH = _growth()


def main(argv: list[str] | None = None) -> int:
    """Seed, time the first page with a single client, run the like burst and check the count."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--app-url", required=True)
    parser.add_argument("--database-url", required=True)
    parser.add_argument("--redis-url", required=True)
    parser.add_argument("--requests", type=int, default=500, help="first-page requests per reader")
    parser.add_argument("--concurrency", type=int, default=32)
    args = parser.parse_args(argv)
    app = bench_app(args.database_url, args.redis_url)
    started = time.perf_counter()
    info = seed(args.database_url, args.redis_url, app=app)
    print(
        f"seeded/found {info.posts} posts, {info.comments} comments in {time.perf_counter() - started:.1f} s"
    )
    session = requests.Session()
    for label, (path, headers) in first_page_requests(args.app_url, info).items():
        samples = []
        for _ in range(args.requests):
            t0 = time.perf_counter()
            response = session.get(args.app_url + path, headers=headers, timeout=10)
            samples.append((time.perf_counter() - t0) * 1000)
            response.raise_for_status()
        print(f"{label}: median {statistics.median(samples):.2f} ms over {len(samples)} sequential requests")
    post_id = create_burst_post(args.app_url, info.city_id, session)
    burst = like_burst(args.app_url, info.tokens, post_id, concurrency=args.concurrency)
    counts = check_like_count(args.app_url, args.database_url, args.redis_url, post_id, app=app)
    print(
        f"like burst: {burst.likes} likes in {burst.seconds:.1f} s ({burst.rate:.0f}/s, "
        f"p50 {burst.percentile(50):.1f} ms, p99 {burst.percentile(99):.1f} ms), "
        f"statuses {burst.statuses}; counts {json.dumps(counts)}"
    )
    return 0 if set(counts.values()) == {len(set(info.tokens))} else 1


if __name__ == "__main__":
    sys.exit(main())
