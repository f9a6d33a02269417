"""The migrations are the schema: one head, no difference from the models, and every database an
earlier chain left behind upgrades to the same schema as an empty one (see ``migrations/env.py``,
``restamp_legacy``)."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterator
from contextlib import closing
from pathlib import Path
from typing import Any

import psycopg
import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.operations import Operations
from alembic.script import ScriptDirectory
from flask import Flask, current_app
from flask_migrate import downgrade, upgrade
from sqlalchemy import Connection, inspect, select, text

from tests.fixtures.environment import PG_SERVER_URL, PG_TEST_DATABASE, TEST_DB, make_config
from yijing import create_app
from yijing.extensions import db
from yijing.models import DailyHistogram


def test_single_head(app_ctx):
    config = app_ctx.extensions["migrate"].migrate.get_config()
    heads = ScriptDirectory.from_config(config).get_heads()
    assert len(heads) == 1, f"several migration heads: {heads}"


def test_files_ids_and_order_agree(app_ctx):
    """0001 → 0002 → … in file-name order, each file named ``NNNN_<what it adds>.py``."""
    config = app_ctx.extensions["migrate"].migrate.get_config()
    script = ScriptDirectory.from_config(config)
    chain = list(reversed(list(script.walk_revisions())))
    assert [r.revision for r in chain] == [f"{n:04d}" for n in range(1, len(chain) + 1)]
    for previous, revision in zip([None, *chain], chain, strict=False):
        assert revision.down_revision == (previous.revision if previous else None)
        name = revision.path.rsplit("/", 1)[-1]
        assert name.startswith(f"{revision.revision}_") and not name.removesuffix(".py").endswith("_")
        assert revision.doc.strip(), f"{name} says nothing about what it adds"


def test_models_match_migrations(app_ctx):
    configure_args = app_ctx.extensions["migrate"].configure_args
    with db.engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": True, **configure_args})
        diff = compare_metadata(context, db.metadata)
    assert diff == [], f"models and migrations differ; write a migration: {diff}"


# --- databases an earlier chain left behind --------------------------------------------------


def schema(conn: Connection) -> dict[str, Any]:
    """Tables with their columns, primary key, indexes, unique constraints and foreign keys.

    Columns are compared by name, not position: a column added by a later revision sits at the end
    of its table, so a database whose revisions ran in another order (personal information before
    0011) has the same columns in another order, which neither SQL by name nor the ORM sees."""
    inspector = inspect(conn)
    tables: dict[str, Any] = {}
    for table in sorted(inspector.get_table_names()):
        if table == "alembic_version":
            continue
        tables[table] = {
            "columns": sorted(
                (c["name"], str(c["type"]), c["nullable"], str(c.get("default")))
                for c in inspector.get_columns(table)
            ),
            "primary key": inspector.get_pk_constraint(table)["constrained_columns"],
            "indexes": sorted(
                (i["name"], tuple(i["column_names"]), bool(i["unique"])) for i in inspector.get_indexes(table)
            ),
            "unique": sorted(
                (u["name"], tuple(u["column_names"])) for u in inspector.get_unique_constraints(table)
            ),
            "foreign keys": sorted(
                (tuple(f["constrained_columns"]), f["referred_table"], tuple(f["referred_columns"]))
                for f in inspector.get_foreign_keys(table)
            ),
        }
    return tables


def stamp_rows(conn: Connection, *versions: str) -> None:
    """Write the version table as an earlier chain left it (alembic's own stamp runs env.py)."""
    conn.execute(text("DELETE FROM alembic_version"))
    for version in versions:
        conn.execute(text("INSERT INTO alembic_version (version_num) VALUES (:v)"), {"v": version})


def apply(conn: Connection, revision: str) -> None:
    """Run one revision's upgrade out of the chain's order (a state only an earlier chain made)."""
    config = current_app.extensions["migrate"].migrate.get_config()
    module = ScriptDirectory.from_config(config).get_revision(revision).module
    with Operations.context(MigrationContext.configure(conn)):
        module.upgrade()


def old_volunteer_days_index(conn: Connection) -> None:
    """0008 as it was until it also put ``volunteer_id`` into this index (commit c7a5c7a)."""
    with Operations.context(MigrationContext.configure(conn)) as op:
        op.drop_index("ix_volunteer_days_community_day", table_name="volunteer_days")
        op.create_index("ix_volunteer_days_community_day", "volunteer_days", ["community_id", "day"])


# Today's head: the last file of the chain.
HEAD = "0016"

# Every state a head of main has left a database in (`git log --first-parent main -- migrations/versions`),
# built with today's files: which revision of today's chain has the same schema, what else differed,
# and the version rows that chain wrote. Checked once against the files of those commits themselves.
EARLIER_HEADS: dict[str, tuple[str, Callable[[Connection], None] | None, tuple[str, ...]]] = {
    "e6fb9d0 foundation": ("0001", None, ("0001",)),
    "2336795 clues and media were 0003": ("0002", None, ("0003",)),
    "d618cd6 volunteers were 0002, on 0003": ("0003", None, ("0002",)),
    "3b47310 feed": ("0004", None, ("0004",)),
    "95daf72 notifications": ("0005", None, ("0005",)),
    "848f2b2 tasks": ("0006", None, ("0006",)),
    "9cf3723 reports": ("0007", None, ("0007",)),
    "d1a1cef 0008 before its volunteer-days index": ("0008", old_volunteer_days_index, ("0008",)),
    "8482bd0 0009 on that 0008": ("0009", old_volunteer_days_index, ("0009",)),
    "c7a5c7a subtree daily stats": ("0009", None, ("0009",)),
    "a4d2547 points by user and time": ("0010", None, ("0010",)),
    "a425e89 personal information was 0013, on 0010": ("0010", lambda conn: apply(conn, "0012"), ("0013",)),
    "9ea4d2f two heads, 0011 and personal information 0013": ("0012", None, ("0011", "0013")),
    "e7ff93d personal information rights, staff passwords": ("0013", None, ("0013",)),
    "f9777f4 the reports' covering indexes": ("0014", None, ("0014",)),
    "ca7f240 active counts": ("0015", None, ("0015",)),
}


@pytest.fixture
def database(redis_url: str, fake_wechat: Any, tmp_path: Path) -> Iterator[Callable[..., Flask]]:
    """``database(name, copy_of=None)``: the app on this test's database ``name``, made empty, or a
    copy of the database ``copy_of`` as it stands (PostgreSQL: ``CREATE DATABASE … TEMPLATE``).

    One app per name for the whole test (creating an app costs ~0.3 s); its connections are closed
    before any database is dropped or copied (a template may have no one connected)."""
    apps: dict[str, Flask] = {}
    base = PG_SERVER_URL.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg://", 1)

    def pg_name(name: str) -> str:
        return f"{PG_TEST_DATABASE}_migrations_{name}"

    def make(name: str, copy_of: str | None = None) -> Flask:
        for built in apps.values():
            with built.app_context():
                db.engine.dispose()
        if TEST_DB == "postgresql":
            template = f' TEMPLATE "{pg_name(copy_of)}"' if copy_of else ""
            with psycopg.connect(PG_SERVER_URL, autocommit=True) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{pg_name(name)}" WITH (FORCE)')
                conn.execute(f'CREATE DATABASE "{pg_name(name)}"{template}')
            url = f"{base}/{pg_name(name)}"
        else:
            path = tmp_path / f"migrations-{name}.db"
            for leftover in (path, path.with_name(f"{path.name}-wal"), path.with_name(f"{path.name}-shm")):
                leftover.unlink(missing_ok=True)
            if copy_of:
                with (
                    closing(sqlite3.connect(tmp_path / f"migrations-{copy_of}.db")) as source,
                    closing(sqlite3.connect(path)) as target,
                ):
                    source.backup(target)
            url = f"sqlite:///{path}"
        if name not in apps:
            apps[name] = create_app(make_config(url, redis_url, fake_wechat.base_url))
        return apps[name]

    yield make
    for built in apps.values():
        with built.app_context():
            db.engine.dispose()
    if TEST_DB == "postgresql":
        with psycopg.connect(PG_SERVER_URL, autocommit=True) as conn:
            for name in apps:
                conn.execute(f'DROP DATABASE IF EXISTS "{pg_name(name)}" WITH (FORCE)')


def test_every_earlier_head_upgrades_to_the_schema_of_an_empty_database(database, app):
    with database("state").app_context():
        upgrade()
        with db.engine.connect() as conn:
            expected = schema(conn)
            head = conn.execute(text("SELECT version_num FROM alembic_version")).scalars().all()
    assert head == [HEAD] and "users" in expected

    # One database climbs the chain once; each earlier head starts from a copy of it at its revision
    # (the same schema as an upgrade from empty to that revision, without running the chain anew).
    chain = database("chain")
    for state, (revision, differs, rows) in sorted(EARLIER_HEADS.items(), key=lambda item: item[1][0]):
        with chain.app_context():
            upgrade(revision=revision)
        with database("state", copy_of="chain").app_context():
            with db.engine.begin() as conn:
                if differs:
                    differs(conn)
                stamp_rows(conn, *rows)
            upgrade()
            with db.engine.connect() as conn:
                versions = conn.execute(text("SELECT version_num FROM alembic_version")).scalars().all()
                assert versions == [HEAD], state
                assert schema(conn) == expected, state


def test_0016_moves_the_histograms_out_of_daily_stats_and_back(database):
    """Rolled-up histograms become one row per node, day and histogram (values ascending), the
    other figures stay; the downgrade gives the per-value rows back as they were."""
    rows = [
        (7, "2026-11-02", "resp_accept_s", "100", 3),
        (7, "2026-11-02", "resp_accept_s", "30", 2),
        (7, "2026-11-02", "resp_accept_s", "5", 1),
        (7, "2026-11-03", "clue_answer_min", "12", 4),
        (8, "2026-11-02", "resp_checkin_s", "600", 1),
        (7, "2026-11-02", "task_published", "patrol", 9),
    ]
    insert = text(
        "INSERT INTO daily_stats (jurisdiction_id, day, metric, dimension, value) "
        "VALUES (:j, :d, :m, :dim, :v)"
    )
    read = text(
        "SELECT jurisdiction_id, CAST(day AS VARCHAR), metric, dimension, value FROM daily_stats "
        "ORDER BY jurisdiction_id, day, metric, dimension"
    )
    with database("0016").app_context():
        upgrade(revision="0015")
        with db.engine.begin() as conn:
            conn.execute(insert, [dict(zip(("j", "d", "m", "dim", "v"), row, strict=True)) for row in rows])
            before = conn.execute(read).all()
        upgrade(revision="0016")
        with db.engine.connect() as conn:
            assert conn.execute(read).all() == [(7, "2026-11-02", "task_published", "patrol", 9)]
            moved = {
                (jid, str(day), metric): (list(bins), list(counts))
                for jid, day, metric, bins, counts in conn.execute(
                    select(
                        DailyHistogram.jurisdiction_id,
                        DailyHistogram.day,
                        DailyHistogram.metric,
                        DailyHistogram.bins,
                        DailyHistogram.counts,
                    )
                )
            }
        assert moved == {
            (7, "2026-11-02", "resp_accept_s"): ([5, 30, 100], [1, 2, 3]),
            (7, "2026-11-03", "clue_answer_min"): ([12], [4]),
            (8, "2026-11-02", "resp_checkin_s"): ([600], [1]),
        }
        downgrade(revision="0015")
        with db.engine.connect() as conn:
            assert conn.execute(read).all() == before
