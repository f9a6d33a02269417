"""One sending rate for subscribe messages, shared by every worker through Redis.

WeChat limits sends per minute. Each second of the minute gets an equal share of the configured rate
(the remainder going to the first seconds), so any 60 consecutive seconds allow at most
``rate_per_minute`` sends however many workers there are; bursts are flattened to a steady pace.
A WeChat rate answer (45009, 45011) pauses every worker for a while.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from redis import Redis

WINDOW_KEY_TTL = 5


class SendRateLimiter:
    def __init__(
        self,
        redis: Redis,
        key_prefix: str,
        rate_per_minute: int,
        *,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if rate_per_minute < 1:
            raise ValueError("rate_per_minute must be at least 1")
        self.redis = redis
        self.prefix = f"{key_prefix}wxsend"
        self.rate = rate_per_minute
        self.clock = clock
        self.sleep = sleep

    def quota(self, second: int) -> int:
        """Sends allowed in the wall-clock second ``second`` (Unix time)."""
        base, extra = divmod(self.rate, 60)
        return base + (1 if second % 60 < extra else 0)

    def try_acquire(self) -> float:
        """Take one send now and return 0, or return how many seconds to wait before asking again."""
        granted, wait = self._take(1)
        return 0.0 if granted else wait

    def _take(self, n: int) -> tuple[int, float]:
        """Take up to ``n`` sends of this second: (how many were granted, seconds to wait if none)."""
        now = self.clock()
        second = int(now)
        quota = self.quota(second)
        # One round trip: is there a pause, and take slots of this second (unused while paused).
        # Taking more than are left only pushes the count further over the quota: same answer.
        pipe = self.redis.pipeline(transaction=False)
        key = f"{self.prefix}:{second}"
        pipe.pttl(f"{self.prefix}:pause")
        if quota:
            pipe.incrby(key, n)
            pipe.expire(key, WINDOW_KEY_TTL)
        answers = pipe.execute()
        paused = answers[0]
        if paused and paused > 0:
            return 0, paused / 1000
        if quota:
            granted = min(n, quota - (answers[1] - n))
            if granted > 0:
                return granted, 0.0
        # The next second that has a share (at most a minute away when the rate is below 60/min).
        wait_until = second + 1
        while not self.quota(wait_until):
            wait_until += 1
        return 0, max(wait_until - now, 0.001)

    def acquire(self, deadline: float | None = None) -> bool:
        """Wait for a send slot; False if it would come after ``deadline`` (a ``clock()`` value)."""
        return self.acquire_up_to(1, deadline) == 1

    def acquire_up_to(self, n: int, deadline: float | None = None) -> int:
        """Wait for send slots and take up to ``n`` of the same second (one round trip when they are
        free); 0 if none would come before ``deadline`` (a ``clock()`` value).

        A worker that takes a block sends it over the next milliseconds, possibly into the next
        second: any 60 seconds then see at most ``rate_per_minute`` plus one block.
        """
        while True:
            granted, wait = self._take(n)
            if granted:
                return granted
            if deadline is not None and self.clock() + wait > deadline:
                return 0
            self.sleep(wait)

    def pause(self, seconds: int) -> None:
        """Stop every worker's sends for ``seconds`` (after a rate answer from WeChat)."""
        self.redis.set(f"{self.prefix}:pause", "1", ex=max(seconds, 1))

    def paused_for(self) -> float:
        remaining = self.redis.pttl(f"{self.prefix}:pause")
        return remaining / 1000 if remaining and remaining > 0 else 0.0
