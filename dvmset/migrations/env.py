"""Alembic environment: runs on the connection dvmset.catalog hands over (no alembic.ini needed)."""

from __future__ import annotations

from alembic import context

from dvmset.tables import Base

config = context.config
connection = config.attributes.get("connection")
if connection is None:  # `alembic` on the command line: build an engine from the configured URL
    from sqlalchemy import create_engine

    connection = create_engine(config.get_main_option("sqlalchemy.url")).connect()

context.configure(connection=connection, target_metadata=Base.metadata,
                  render_as_batch=connection.dialect.name == "sqlite")  # SQLite alters tables by copy
with context.begin_transaction():
    context.run_migrations()
