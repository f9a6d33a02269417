"""``flask yijing …`` commands for operators: data, staff, workers."""

from __future__ import annotations

import sys

import click
from flask import Flask
from flask.cli import AppGroup

from yijing.actor import Actor
from yijing.config import settings
from yijing.errors import DomainError, NotFound
from yijing.models import Role

yijing_cli = AppGroup("yijing", help="包头义警 operator commands.")


def _fail(exc: DomainError) -> None:
    click.echo(f"错误（{exc.code}）：{exc.message} {exc.fields or ''}".rstrip(), err=True)
    sys.exit(1)


@yijing_cli.command("import-jurisdictions")
@click.argument("path", type=click.Path(exists=True, dir_okay=False))
def import_jurisdictions(path: str) -> None:
    """Create or update the jurisdiction tree from a JSON or CSV file.

    Columns/keys: key, parent_key, name, level, code, lat, lng (parents before children).
    """
    from yijing.services import jurisdictions

    try:
        result = jurisdictions.import_nodes(jurisdictions.read_import_file(path))
    except DomainError as exc:
        _fail(exc)
    click.echo(f"imported: {result.created} created, {result.updated} updated")


@yijing_cli.command("create-staff")
@click.argument("username")
@click.option("--name", "display_name", default="", help="Name shown in the console.")
@click.password_option(help="At least 10 characters (prompted when omitted).")
def create_staff(username: str, display_name: str, password: str) -> None:
    """Create a staff account that logs in to the desk console."""
    from yijing.services import auth

    try:
        user = auth.create_staff(username, password, display_name)
    except DomainError as exc:
        _fail(exc)
    click.echo(f"created staff user {user.username} (id {user.id})")


@yijing_cli.command("grant")
@click.argument("username")
@click.argument("role", type=click.Choice([r.value for r in Role if r != Role.RESIDENT]))
@click.argument("jurisdiction_key")
def grant(username: str, role: str, jurisdiction_key: str) -> None:
    """Grant ROLE over a jurisdiction (and its subtree) to a staff user."""
    from sqlalchemy import select

    from yijing.extensions import db
    from yijing.models import User
    from yijing.services import auth, jurisdictions

    user = db.session.scalar(select(User).where(User.username == username))
    if user is None:
        click.echo(f"no user {username}", err=True)
        sys.exit(1)
    try:
        target = jurisdictions.get_by_key(jurisdiction_key)
        auth.grant_role(user.id, Role(role), target.id, Actor.system("cli"))
    except DomainError as exc:
        _fail(exc)
    click.echo(f"granted {role} over {target.name} ({target.key}) to {username}")


@yijing_cli.command("seed-demo")
def seed_demo() -> None:
    """Load Baotou's districts with demo streets, communities, grids and demo staff (never in production)."""
    from yijing.demo import seed

    if settings().is_production:
        click.echo("refusing to load demo data with YIJING_ENV=production", err=True)
        sys.exit(1)
    for line in seed.load_demo():
        click.echo(line)


@yijing_cli.command("demo-activity")
def demo_activity() -> None:
    """A month of demo activity on top of seed-demo (volunteers, tasks, clues with photos, duty, feed)."""
    from yijing.demo import activity

    if settings().is_production:
        click.echo("refusing to load demo data with YIJING_ENV=production", err=True)
        sys.exit(1)
    for line in activity.load_activity():
        click.echo(line)


@yijing_cli.command("worker")
@click.option("--queues", "queue_names", default="", help="Comma-separated; default: all, by priority.")
@click.option("--burst", is_flag=True, help="Quit when the queues are empty.")
@click.option("--no-scheduler", is_flag=True, help="Do not run RQ's scheduler for delayed jobs.")
@click.option("--fork", is_flag=True, help="Fork a work horse per job (isolation at a CPU cost).")
def worker(queue_names: str, burst: bool, no_scheduler: bool, fork: bool) -> None:
    """Run an RQ worker (dispatch › notify › default › reports) with the scheduler for delayed jobs."""
    from workers import runner
    from yijing import jobs

    names = [n.strip() for n in queue_names.split(",") if n.strip()] or list(jobs.ALL)
    unknown = set(names) - set(jobs.ALL)
    if unknown:
        raise click.BadParameter(f"unknown queues: {', '.join(sorted(unknown))}")
    runner.run_worker(names, burst=burst, with_scheduler=not no_scheduler, fork=fork)


@yijing_cli.command("outbox")
@click.option(
    "--status",
    type=click.Choice(["pending", "sent", "inbox_only", "failed"]),
    default=None,
    help="List the latest rows with this status (with their attempts and last error).",
)
@click.option("--kind", default=None, help="Only rows of this notification kind.")
@click.option("--limit", default=20, show_default=True, help="How many rows --status lists.")
@click.option("--retry", is_flag=True, help="Put failed rows (of --kind, if given) back in the queue.")
def outbox(status: str | None, kind: str | None, limit: int, retry: bool) -> None:
    """Show the notification outbox by status; --retry sends failed rows again."""
    from sqlalchemy import select

    from yijing.extensions import db
    from yijing.models import Notification
    from yijing.services import delivery

    if retry:
        count = delivery.retry_failed(kind=kind)
        click.echo(f"re-queued {count} failed notification(s)")
    for name, count in delivery.counts_by_status().items():
        click.echo(f"{name:<11} {count}")
    if status:
        stmt = select(Notification).where(Notification.status == status)
        if kind:
            stmt = stmt.where(Notification.kind == kind)
        click.echo(f"\nlatest {status}:")
        for row in db.session.scalars(stmt.order_by(Notification.id.desc()).limit(limit)):
            when = (row.last_attempt_at or row.created_at).isoformat(timespec="seconds")
            click.echo(
                f"#{row.id} user {row.user_id} {row.kind} attempts {row.attempts} {when}"
                f"{'  ' + row.last_error if row.last_error else ''}"
            )


@yijing_cli.command("cron")
def cron() -> None:
    """Enqueue the periodic jobs (run one per deployment)."""
    from workers import runner

    runner.run_cron()


@yijing_cli.command("rotate-pii-keys")
@click.option("--batch-size", default=500, show_default=True, help="Rows re-encrypted per transaction.")
@click.option("--dry-run", is_flag=True, help="Only count the values still under an old key.")
def rotate_pii_keys(batch_size: int, dry_run: bool) -> None:
    """Re-encrypt every personal-information column under PII_ACTIVE_KEY_ID."""
    from yijing.services import pii_keys

    active = settings().pii_active_key_id
    if not dry_run:
        for label, count in pii_keys.rotate(batch_size=batch_size).items():
            click.echo(f"re-encrypted {count:>8} {label}")
    left = pii_keys.pending()
    for label, count in left.items():
        click.echo(f"under an old key {count:>6} {label}")
    if any(left.values()):
        click.echo(f"values remain under keys other than {active!r}", err=True)
        sys.exit(0 if dry_run else 1)
    click.echo(f"every value is under the active key {active!r}")


@yijing_cli.command("rebuild-duty-index")
def rebuild_duty_index() -> None:
    """Rebuild the Redis index of on-duty volunteers from the database (safe while running)."""
    from yijing.services import duty

    result = duty.rebuild_index()
    click.echo(f"duty index rebuilt: {result.added} on duty, {result.removed} stale entries removed")


@yijing_cli.command("rebuild-task-index")
def rebuild_task_index() -> None:
    """Rebuild the Redis index of open tasks from the database (safe while running)."""
    from yijing.services import task_index

    result = task_index.repair()
    click.echo(f"task index rebuilt: {result.written} written, {result.removed} removed")


@yijing_cli.command("rollup")
@click.option("--from", "first", type=click.DateTime(["%Y-%m-%d"]), default=None, help="First local day.")
@click.option("--to", "last", type=click.DateTime(["%Y-%m-%d"]), default=None, help="Last local day (today).")
@click.option(
    "--check", is_flag=True, help="Only compare the days with the raw rows; exit 1 when one differs."
)
def rollup(first: object, last: object, check: bool) -> None:
    """(Re)build the report rollups for a range of days (default: REPORT_ROLLUP_DAYS up to today).

    Runs may overlap (with each other and with the worker's jobs): rebuilds of a day take turns."""
    from datetime import timedelta

    from yijing.services import rollups

    last_day = last.date() if last else rollups.local_today()  # type: ignore[attr-defined]
    window = settings().report_rollup_days
    first_day = first.date() if first else last_day - timedelta(days=window)  # type: ignore[attr-defined]
    if first_day > last_day:
        click.echo("错误：--from 应不晚于 --to", err=True)
        sys.exit(1)
    total = (last_day - first_day).days + 1
    if check:
        differ = rollups.differing_days(first_day, last_day)
        if differ:
            click.echo(
                f"{len(differ)} of {total} days differ from the raw rows: " + ", ".join(map(str, differ))
            )
            click.echo(f"rebuild them with `flask yijing rollup --from {differ[0]} --to {differ[-1]}`")
            sys.exit(1)
        click.echo(f"checked {total} days ({first_day} – {last_day}): every day equals the raw rows")
        return
    with click.progressbar(length=total, label="rollup") as bar:
        rows = rollups.rebuild(first_day, last_day, progress=lambda _day: bar.update(1), vacuum=True)
    click.echo(f"rolled up {total} days ({first_day} – {last_day}): {rows} rows")


@yijing_cli.command("generate")
@click.option("--volunteers", default=1000, show_default=True, help="Volunteers (and their users).")
@click.option("--residents", default=0, show_default=True, help="Further users who are not volunteers.")
@click.option("--assignments", default=5000, show_default=True, help="Assignments (tasks of ~4 places).")
@click.option("--clues", default=2000, show_default=True, help="Clues.")
@click.option("--days", default=60, show_default=True, help="Spread over the last N days.")
@click.option("--seed", default=1, show_default=True, help="Random seed (same seed, same shape).")
@click.option("--under", "under_key", default=None, help="Only the communities under this jurisdiction key.")
def generate(
    volunteers: int,
    residents: int,
    assignments: int,
    clues: int,
    days: int,
    seed: int,
    under_key: str | None,
) -> None:
    """Generate a synthetic data set in the existing jurisdiction tree (benchmarks, demos).

    The city's scale: --residents 1650000 --volunteers 200000 --assignments 5000000
    --clues 2000000 --days 365 (PostgreSQL; about a quarter of an hour on two cores).
    """
    from yijing.demo import datagen
    from yijing.services import jurisdictions

    root_path = None
    if under_key:
        try:
            root_path = jurisdictions.get_by_key(under_key).path
        except NotFound as exc:
            raise click.ClickException(f"no jurisdiction with key {under_key}") from exc
    total = residents + volunteers + assignments + clues
    with click.progressbar(length=total, label="generate") as bar:
        result = datagen.generate(
            volunteers,
            assignments,
            clues,
            days=days,
            seed=seed,
            residents=residents,
            root_path=root_path,
            progress=lambda _stage, n: bar.update(n),
        )
    click.echo(
        f"generated {result.residents} residents, {result.volunteers} volunteers, {result.teams} teams, "
        f"{result.tasks} tasks, "
        f"{result.assignments} assignments, {result.clues} clues; run `flask yijing rollup --from …` next"
    )


def init_cli(app: Flask) -> None:
    app.cli.add_command(yijing_cli)
