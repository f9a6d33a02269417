import logging
from logging.config import fileConfig

from alembic import context
from flask import current_app

# this is the Alembic Config object, which provides
# access to the values within the .ini file in use.
config = context.config

# Interpret the config file for Python logging.
# This line sets up loggers basically.
# The app configures logging itself (JSON, request ids); alembic.ini's logging is for bare alembic runs.
if not getattr(logging.getLogger(), "_yijing_configured", False):
    fileConfig(config.config_file_name, disable_existing_loggers=False)
logger = logging.getLogger("alembic.env")


def get_engine():
    return current_app.extensions["migrate"].db.engine


def get_engine_url():
    try:
        return get_engine().url.render_as_string(hide_password=False).replace("%", "%%")
    except AttributeError:
        return str(get_engine().url).replace("%", "%%")


# add your model's MetaData object here
# for 'autogenerate' support
# from myapp import mymodel
# target_metadata = mymodel.Base.metadata
config.set_main_option("sqlalchemy.url", get_engine_url())
target_db = current_app.extensions["migrate"].db

# other values from the config, defined by the needs of env.py,
# can be acquired:
# my_important_option = config.get_main_option("my_important_option")
# ... etc.


def get_metadata():
    if hasattr(target_db, "metadatas"):
        return target_db.metadatas[None]
    return target_db.metadata


def render_item(type_, obj, autogen_context):
    """Render the app's column types as plain SQLAlchemy ones so migrations never import the app."""
    from yijing.models.base import UTCDateTime

    if type_ == "type" and isinstance(obj, UTCDateTime):
        return "sa.DateTime(timezone=True)"
    return False


# --- Databases stamped before the chain was renumbered ------------------------------------------
# Until 2026-12-01 the chain read out of order (0001 → 0003 clues → 0002 volunteers → 0004 …), and
# for a while personal information was "0013" on top of 0010, beside "0011" (two heads). The chain
# was renumbered once so files, ids and order agree; a database stamped by an earlier chain is
# restamped to the revision of the new chain with the same schema before any command runs. Where
# the old and new meaning of an id differ, the schema tells them apart. tests/test_migrations.py
# builds each earlier head of main and upgrades it.


def _inspect(connection):
    from sqlalchemy import inspect

    return inspect(connection)


def _has_table(connection, table):
    return _inspect(connection).has_table(table)


def _has_column(connection, table, column):
    return any(c["name"] == column for c in _inspect(connection).get_columns(table))


def _index_columns(connection, table, index):
    return next(
        (i["column_names"] for i in _inspect(connection).get_indexes(table) if i["name"] == index), None
    )


# (version rows found, test on the schema, revisions of the new chain to apply, new version)
LEGACY_STAMPS = (
    # old "0003" was clues and media on 0001 (now 0002); old "0002" was volunteers on it (now 0003)
    ({"0003"}, lambda conn: not _has_table(conn, "volunteers"), (), "0002"),
    ({"0002"}, lambda conn: _has_table(conn, "volunteers"), (), "0003"),
    # two heads: 0011 (report event days) and the old "0013" (personal information, now 0012)
    ({"0011", "0013"}, lambda conn: True, (), "0012"),
    # the old "0013" alone: personal information on 0010, without 0011's report event days
    ({"0013"}, lambda conn: not _has_column(conn, "users", "must_change_password"), ("0011",), "0012"),
)


def restamp_legacy(migration_context, script):
    """Restamp a database of an earlier chain (see above) and bring it to the same schema."""
    from alembic.operations import Operations
    from sqlalchemy import text

    connection = migration_context.connection
    found = set(migration_context.get_current_heads())
    for old, applies, revisions, new in LEGACY_STAMPS:
        if found == old and applies(connection):
            with Operations.context(migration_context):
                for revision in revisions:
                    script.get_revision(revision).module.upgrade()
            table = migration_context.version_table
            connection.execute(text(f"DELETE FROM {table}"))
            connection.execute(text(f"INSERT INTO {table} (version_num) VALUES (:v)"), {"v": new})
            logger.info("restamped a database of the earlier chain: %s -> %s", sorted(old), new)
            found = {new}
            break
    # 0008 once indexed volunteer days by (community, day) alone; a database upgraded past it then
    # kept that index. (Versions past 0008 are those that are neither empty nor 0001…0007.)
    index = "ix_volunteer_days_community_day"
    past_0008 = found and not found & {"0001", "0002", "0003", "0004", "0005", "0006", "0007"}
    if past_0008 and _index_columns(connection, "volunteer_days", index) == ["community_id", "day"]:
        with Operations.context(migration_context) as op:
            op.drop_index(index, table_name="volunteer_days")
            op.create_index(index, "volunteer_days", ["community_id", "day", "volunteer_id"])
        logger.info("rebuilt %s as 0008 writes it today", index)


def run_migrations_offline():
    """Run migrations in 'offline' mode.

    This configures the context with just a URL
    and not an Engine, though an Engine is acceptable
    here as well.  By skipping the Engine creation
    we don't even need a DBAPI to be available.

    Calls to context.execute() here emit the given string to the
    script output.

    """
    url = config.get_main_option("sqlalchemy.url")
    context.configure(url=url, target_metadata=get_metadata(), literal_binds=True)

    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online():
    """Run migrations in 'online' mode.

    In this scenario we need to create an Engine
    and associate a connection with the context.

    """

    # this callback is used to prevent an auto-migration from being generated
    # when there are no changes to the schema
    # reference: http://alembic.zzzcomputing.com/en/latest/cookbook.html
    def process_revision_directives(context, revision, directives):
        if getattr(config.cmd_opts, "autogenerate", False):
            script = directives[0]
            if script.upgrade_ops.is_empty():
                directives[:] = []
                logger.info("No changes in schema detected.")

    conf_args = current_app.extensions["migrate"].configure_args
    if conf_args.get("process_revision_directives") is None:
        conf_args["process_revision_directives"] = process_revision_directives

    connectable = get_engine()

    with connectable.connect() as connection:
        context.configure(
            connection=connection, target_metadata=get_metadata(), render_item=render_item, **conf_args
        )

        with context.begin_transaction():
            from alembic.script import ScriptDirectory

            restamp_legacy(context.get_context(), ScriptDirectory.from_config(config))
            context.run_migrations()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
