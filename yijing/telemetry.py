"""Counters that every host writes to Redis, read by ``/metrics`` (see :mod:`yijing.web.metrics`)."""

from __future__ import annotations

import contextlib
import time

from redis import Redis
from redis.exceptions import RedisError

WECHAT_ERRORS_KEY = ("metrics", "wechat-errors")
ROLLUP_AT_KEY = ("metrics", "rollup-at")


def count_wechat_error(redis: Redis, key_prefix: str, errcode: int | None) -> None:
    """Count a WeChat API failure by errcode (``http`` for no answer); never raises."""
    with contextlib.suppress(RedisError):
        redis.hincrby(key_prefix + ":".join(WECHAT_ERRORS_KEY), str(errcode) if errcode else "http", 1)


def mark_rollup_refreshed(redis: Redis, key_prefix: str) -> None:
    """Record that the report rollups were just recomputed (``yijing_rollup_age_seconds``); never raises."""
    with contextlib.suppress(RedisError):
        redis.set(key_prefix + ":".join(ROLLUP_AT_KEY), str(time.time()))
