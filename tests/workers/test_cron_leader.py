"""Two periodic-job schedulers on one Redis (two hosts running ``flask yijing cron``): no job runs twice.

The schedulers' clock is moved by hand (``rq.cron.now`` and ``workers.leader.now``); Redis is real.
"""

from __future__ import annotations

import itertools
from collections import defaultdict
from datetime import UTC, datetime, timedelta

import pytest
from rq import Queue

from workers import leader, runner, schedule
from yijing import jobs
from yijing.extensions import redis_client

START = datetime(2026, 3, 2, 0, 0, tzinfo=UTC)
STEP = 5  # seconds between two loops of a scheduler; divides every interval of the schedule
DURATION = 3590


class Clock:
    def __init__(self) -> None:
        self.at = START

    def __call__(self) -> datetime:
        return self.at


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    clock = Clock()
    monkeypatch.setattr("rq.cron.now", clock)
    monkeypatch.setattr(leader, "now", clock)
    return clock


def _queued_total() -> int:
    return sum(Queue(jobs.queue_name(n), connection=redis_client()).count for n in jobs.ALL)


def _run(clock: Clock, plan, runs: dict[str, list[float]]) -> None:  # type: ignore[no-untyped-def]
    """Step the clock; at each step ``plan(seconds)`` names the schedulers that loop then."""
    for seconds in range(0, DURATION + 1, STEP):
        clock.at = START + timedelta(seconds=seconds)
        for scheduler in plan(seconds):
            for job in scheduler.enqueue_jobs():
                runs[job.name].append(seconds)


def test_a_second_scheduler_started_by_mistake_enqueues_nothing(app_ctx, clock):
    first, second = runner.cron_scheduler(), runner.cron_scheduler()
    runs: dict[str, list[float]] = defaultdict(list)
    by_scheduler = {first.name: 0, second.name: 0}

    def plan(_seconds: int):  # type: ignore[no-untyped-def]
        return (second, first) if _seconds % 20 else (first, second)

    for seconds in range(0, DURATION + 1, STEP):
        clock.at = START + timedelta(seconds=seconds)
        for scheduler in plan(seconds):
            enqueued = scheduler.enqueue_jobs()
            by_scheduler[scheduler.name] += len(enqueued)
            for job in enqueued:
                runs[job.name].append(seconds)

    assert first.is_leader and not second.is_leader
    assert by_scheduler[second.name] == 0
    for entry in schedule.PERIODIC_JOBS:
        name = f"{entry.func.__module__}.{entry.func.__name__}"
        # Exactly what one scheduler alone enqueues: at 0, interval, 2 × interval, …
        assert runs[name] == list(range(0, DURATION + 1, entry.interval)), name
    assert _queued_total() == sum(len(r) for r in runs.values())


def test_when_the_leader_dies_the_standby_takes_over_without_running_a_job_early(app_ctx, clock):
    first, second = runner.cron_scheduler(), runner.cron_scheduler()
    runs: dict[str, list[float]] = defaultdict(list)
    crash_at = 100

    def plan(seconds: int):  # type: ignore[no-untyped-def]
        if seconds < crash_at:
            return (first, second)
        if seconds == crash_at:
            # The leader's host is lost: its lease expires (what Redis does after CRON_LEADER_TTL).
            redis_client().delete(first.lease.key)
        return (second,)

    _run(clock, plan, runs)

    assert second.is_leader
    assert first.lease.leader() == second.name
    for entry in schedule.PERIODIC_JOBS:
        name = f"{entry.func.__module__}.{entry.func.__name__}"
        times = runs[name]
        assert times[0] == 0, name
        gaps = {b - a for a, b in itertools.pairwise(times)}
        # Never twice within an interval; the standby goes on one interval after the leader's last run.
        assert gaps <= {entry.interval}, (name, times)
        assert times == list(range(0, DURATION + 1, entry.interval)), name
    assert _queued_total() == sum(len(r) for r in runs.values())


def test_a_scheduler_that_stops_hands_over_at_once(app_ctx, clock):
    first, second = runner.cron_scheduler(), runner.cron_scheduler()
    first.register_birth()  # what start() does
    assert first.enqueue_jobs()
    assert second.enqueue_jobs() == []
    first.register_death()  # a clean stop (SIGTERM) gives the lease up
    clock.at = START + timedelta(seconds=STEP)
    assert second.enqueue_jobs() == []  # leads, but every job ran within its interval
    assert second.is_leader
    clock.at = START + timedelta(seconds=30)
    due_at_30s = {
        f"{e.func.__module__}.{e.func.__name__}" for e in schedule.PERIODIC_JOBS if 30 % e.interval == 0
    }
    assert {job.name for job in second.enqueue_jobs()} == due_at_30s
