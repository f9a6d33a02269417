"""A Redis cache that degrades to a miss when Redis is unreachable.

Nothing a user submits may depend on Redis being up: callers fall back to the database.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from redis.exceptions import RedisError

from yijing.extensions import redis_client, redis_key

log = logging.getLogger(__name__)


def get_json(*key_parts: object) -> Any | None:
    try:
        raw = redis_client().get(redis_key(*key_parts))
    except RedisError as exc:
        log.warning("cache read failed, using the database", extra={"error": str(exc)})
        return None
    return None if raw is None else json.loads(raw)


def set_json(value: Any, ttl: int, *key_parts: object) -> None:
    try:
        redis_client().set(redis_key(*key_parts), json.dumps(value, default=str), ex=max(ttl, 1))
    except RedisError as exc:
        log.warning("cache write failed", extra={"error": str(exc)})


def get_many(*keys: tuple[object, ...]) -> list[bytes | None]:
    """The raw values of several keys (each a tuple of parts) in one round trip; all None when
    Redis is unreachable."""
    try:
        return list(redis_client().mget([redis_key(*parts) for parts in keys]))
    except RedisError as exc:
        log.warning("cache read failed, using the database", extra={"error": str(exc)})
        return [None] * len(keys)


def set_bytes(value: bytes, ttl: int, *key_parts: object) -> None:
    """Store a raw value (read back with :func:`get_many`)."""
    try:
        redis_client().set(redis_key(*key_parts), value, ex=max(ttl, 1))
    except RedisError as exc:
        log.warning("cache write failed", extra={"error": str(exc)})


def delete(*keys: tuple[object, ...]) -> None:
    """Delete each key given as a tuple of parts; a failure is logged (TTLs bound staleness)."""
    try:
        redis_client().delete(*(redis_key(*parts) for parts in keys))
    except RedisError as exc:
        log.warning("cache invalidation failed", extra={"error": str(exc)})


def version(*key_parts: object) -> int:
    """A counter that writers bump to retire cached values keyed by it (0 when Redis is down)."""
    try:
        raw = redis_client().get(redis_key(*key_parts))
    except RedisError:
        return 0
    return int(raw or 0)


def bump(*key_parts: object) -> None:
    try:
        redis_client().incr(redis_key(*key_parts))
    except RedisError as exc:
        log.warning("cache version bump failed; cached values expire by their TTL", extra={"error": str(exc)})
