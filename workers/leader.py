"""One periodic-jobs scheduler at a time, however many hosts run ``flask yijing cron``.

Two guards, both in Redis so every host sees them:

- a **leader lease**: a key holding the scheduler's name with a short expiry, taken with ``SET NX``
  and renewed (only by its holder, compare-and-extend in Lua) on every loop. A scheduler that does
  not hold it enqueues nothing; when the leader dies, its lease expires and another takes over
  within ``CRON_LEADER_TTL`` seconds.
- a **run claim** per periodic job: the leader enqueues a job only if the job's last run, recorded
  in Redis by whichever scheduler made it, is at least its interval (less a second) ago. A new
  leader therefore does not enqueue again a job that the old leader enqueued moments before it
  died, and two leaders (a lease lost during a long pause, say) cannot both enqueue the same run.

Unlike a lock around a job's work, nothing here outlives its holder by more than its expiry.
"""

from __future__ import annotations

import contextlib
import logging
from datetime import UTC, datetime

from redis import Redis
from redis.exceptions import RedisError
from rq.cron import CronJob, CronScheduler
from rq.utils import now

log = logging.getLogger(__name__)

# Renew the lease if we hold it, and only then (compare-and-extend).
_RENEW = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
    return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
"""
# Record a run at ARGV[1] (epoch seconds) unless the last one is less than ARGV[2] seconds before;
# returns '' when recorded, else the last run's time.
_CLAIM = """
local last = redis.call('GET', KEYS[1])
if last and tonumber(ARGV[1]) - tonumber(last) < tonumber(ARGV[2]) then
    return last
end
redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[3])
return ''
"""
# Give the lease up if we hold it.
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
    return redis.call('DEL', KEYS[1])
end
return 0
"""


class LeaderLease:
    """A lease on ``key`` held by ``holder`` for ``ttl`` seconds at a time."""

    def __init__(self, connection: Redis, key: str, holder: str, ttl: int) -> None:
        self.connection = connection
        self.key = key
        self.holder = holder
        self.ttl_ms = ttl * 1000

    def hold(self) -> bool:
        """Take or renew the lease; True while this holder is the leader."""
        renewed = self.connection.eval(_RENEW, 1, self.key, self.holder, self.ttl_ms)
        if renewed:
            return True
        return bool(self.connection.set(self.key, self.holder, nx=True, px=self.ttl_ms))

    def release(self) -> None:
        self.connection.eval(_RELEASE, 1, self.key, self.holder)

    def leader(self) -> str | None:
        value = self.connection.get(self.key)
        return value.decode() if isinstance(value, bytes) else value


class LeaderCronScheduler(CronScheduler):
    """RQ's cron scheduler that enqueues only while it holds the leader lease, each run once."""

    def __init__(self, connection: Redis, *, key_prefix: str, lease_ttl: int, **kwargs: object) -> None:
        super().__init__(connection, **kwargs)  # type: ignore[arg-type]
        self.key_prefix = key_prefix
        self.lease = LeaderLease(connection, f"{key_prefix}cron:leader", self.name, lease_ttl)
        # Wake often enough to renew the lease (and to take over) well within its expiry.
        self.max_sleep = max(1.0, lease_ttl / 3)
        self.is_leader: bool | None = None  # unknown until the first loop

    def claim_key(self, job: CronJob) -> str:
        return f"{self.key_prefix}cron:ran:{job.name}"

    def _claim(self, job: CronJob, at: datetime) -> datetime | None:
        """None if no scheduler enqueued this job within its interval (this run is recorded), else
        the time of that scheduler's run."""
        interval = job.interval or 60
        gap = max(1, interval - 1)
        last = self.connection.eval(_CLAIM, 1, self.claim_key(job), at.timestamp(), gap, 2 * interval)
        return datetime.fromtimestamp(float(last), UTC) if last else None

    def enqueue_jobs(self) -> list[CronJob]:
        try:
            leader = self.lease.hold()
        except RedisError as exc:
            log.warning("cron: cannot reach Redis for the leader lease", extra={"error": str(exc)})
            leader = False
        if leader != self.is_leader:
            log.info("cron: %s", "leading" if leader else "standing by", extra={"scheduler": self.name})
            self.is_leader = leader
        if not leader:
            return []
        enqueue_time = now()
        enqueued: list[CronJob] = []
        try:
            for job in self._cron_jobs:
                if not job.should_run():
                    continue
                ran_at = self._claim(job, enqueue_time)
                if ran_at is None:
                    job.enqueue(self.connection)
                    enqueued.append(job)
                # Due again one interval after whichever scheduler ran it last.
                job.set_enqueue_time(ran_at or enqueue_time)
        except RedisError as exc:  # a failover in progress: the next loop tries again
            log.warning("cron: Redis failed while enqueueing", extra={"error": str(exc)})
        return enqueued

    # The loop's bookkeeping must not end the process when Redis fails over (the lease and the
    # claims carry what matters).
    def heartbeat(self) -> None:
        with contextlib.suppress(RedisError):
            super().heartbeat()

    def save(self, pipeline=None) -> None:  # type: ignore[no-untyped-def]
        with contextlib.suppress(RedisError):
            super().save(pipeline)

    def calculate_sleep_interval(self) -> float:
        return min(super().calculate_sleep_interval(), self.max_sleep)

    def register_death(self, pipeline=None) -> None:  # type: ignore[no-untyped-def]
        with contextlib.suppress(RedisError):  # otherwise it expires on its own
            self.lease.release()
        super().register_death(pipeline)
