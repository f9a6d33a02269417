"""yijing.jobs: ``enqueue_many`` puts a scheduled job with an id in its one pipeline, as ``enqueue`` would."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta


def test_a_scheduled_job_with_an_id_is_saved_as_enqueue_saves_it_and_only_once(app_ctx):
    from rq import Retry
    from rq.registry import ScheduledJobRegistry

    from yijing import jobs
    from yijing.extensions import redis_client

    when = datetime.now(UTC).replace(microsecond=0) + timedelta(minutes=5)

    def spec(name: str, *args: int) -> jobs.JobSpec:
        return jobs.JobSpec(
            queue=jobs.DISPATCH,
            func="workers.tasks.advance_dispatch",
            args=args,
            job_id=name,
            retry=Retry(max=3, interval=[5, 15, 30]),
            at=when,
        )

    jobs.enqueue(spec("one-by-one", 7, 1))
    now = jobs.JobSpec(queue=jobs.NOTIFY, func="workers.notifications.deliver", args=([1],))
    jobs.enqueue_many([spec("in-a-pipeline", 7, 1), now])
    jobs.enqueue_many([spec("in-a-pipeline", 9, 9)])  # the id is still kept: refused

    client = redis_client()
    registry = ScheduledJobRegistry(queue=jobs.get_queue(jobs.DISPATCH))
    one, piped = (client.hgetall(f"rq:job:{jobs.job_id(n)}") for n in ("one-by-one", "in-a-pipeline"))
    assert {k: v for k, v in piped.items() if k != b"created_at"} == {
        k: v for k, v in one.items() if k != b"created_at"
    }
    assert registry.get_scheduled_time(jobs.job_id("in-a-pipeline")) == when
    assert b"advance_dispatch(7, 1)" in piped[b"description"]
    assert jobs.get_queue(jobs.NOTIFY).count == 1
