"""Alembic environment: migrations run on the connection the Store hands over (never from an ini file)."""
from __future__ import annotations

from alembic import context

connection = context.config.attributes["connection"]
context.configure(connection=connection, target_metadata=None, transaction_per_migration=False)
with context.begin_transaction():  # joins the Store's transaction, which holds the migration lock
    context.run_migrations()
