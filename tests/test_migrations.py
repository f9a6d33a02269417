"""The migrations are the schema: one head, and no difference from the models."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory

from yijing.extensions import db


def test_single_head(app_ctx):
    config = app_ctx.extensions["migrate"].migrate.get_config()
    heads = ScriptDirectory.from_config(config).get_heads()
    assert len(heads) == 1, f"several migration heads: {heads}"


def test_models_match_migrations(app_ctx):
    configure_args = app_ctx.extensions["migrate"].configure_args
    with db.engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": True, **configure_args})
        diff = compare_metadata(context, db.metadata)
    assert diff == [], f"models and migrations differ; write a migration: {diff}"
