"""The sending rate shared by every worker through Redis."""

from __future__ import annotations

import pytest
import redis as redis_lib

from yijing.wechat.send_rate import SendRateLimiter


class FakeClock:
    def __init__(self, start: float) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def redis(redis_url):
    client = redis_lib.Redis.from_url(redis_url)
    client.flushdb()
    yield client
    client.flushdb()


def test_no_sixty_seconds_allow_more_than_the_rate_across_workers(redis):
    clock = FakeClock(1_800_000_000.0)
    # Two workers, one limit.
    workers = [SendRateLimiter(redis, "t:", 130, clock=clock, sleep=clock.sleep) for _ in range(2)]
    sent_at: list[float] = []
    for i in range(400):
        limiter = workers[i % 2]
        assert limiter.acquire()
        sent_at.append(clock.now)
    for start in range(len(sent_at)):
        window = [t for t in sent_at[start:] if t < sent_at[start] + 60]
        assert len(window) <= 130
    # And the pace is the rate, not slower: 400 sends fit in a little over 3 minutes.
    assert sent_at[-1] - sent_at[0] < 4 * 60


def test_each_second_gets_its_share(redis):
    limiter = SendRateLimiter(redis, "t:", 130)
    assert sum(limiter.quota(s) for s in range(60)) == 130
    assert sum(limiter.quota(s) for s in range(17, 77)) == 130
    slow = SendRateLimiter(redis, "t:", 2)
    assert sum(slow.quota(s) for s in range(60)) == 2


def test_acquire_gives_up_at_the_deadline(redis):
    clock = FakeClock(1_800_000_000.0)
    limiter = SendRateLimiter(redis, "t:", 1, clock=clock, sleep=clock.sleep)
    assert limiter.acquire()
    assert not limiter.acquire(deadline=clock.now + 5)


def test_a_pause_stops_every_worker(redis):
    clock = FakeClock(1_800_000_000.0)
    limiter = SendRateLimiter(redis, "t:", 6000, clock=clock, sleep=clock.sleep)
    other = SendRateLimiter(redis, "t:", 6000, clock=clock, sleep=clock.sleep)
    limiter.pause(60)
    assert other.try_acquire() > 50
    assert 50 < other.paused_for() <= 60


def test_a_block_of_slots_takes_only_what_the_second_has_left(redis):
    clock = FakeClock(1_800_000_000.0)  # a whole minute's worth: 600 per second
    limiter = SendRateLimiter(redis, "t:", 36_000, clock=clock, sleep=clock.sleep)
    other = SendRateLimiter(redis, "t:", 36_000, clock=clock, sleep=clock.sleep)
    assert limiter.acquire_up_to(595) == 595
    assert other.acquire_up_to(10) == 5  # what is left of this second, not more
    second = int(clock.now)
    assert other.acquire_up_to(10) == 10  # waited for the next second
    assert int(clock.now) == second + 1
    assert other.acquire_up_to(600) == 590
    assert limiter.acquire_up_to(1, deadline=clock.now + 0.5) == 0  # the next second is too late
