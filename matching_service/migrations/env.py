"""Alembic environment: always driven programmatically (matching_service.db.migrate)."""
from alembic import context

from matching_service.db import load_models

target_metadata = load_models()
config = context.config
connection = config.attributes.get("connection")
if connection is None:
    import sqlalchemy as sa

    engine = sa.create_engine(config.get_main_option("sqlalchemy.url"))
    with engine.begin() as connection:
        context.configure(connection=connection, target_metadata=target_metadata,
                          render_as_batch=True)
        with context.begin_transaction():
            context.run_migrations()
else:
    context.configure(connection=connection, target_metadata=target_metadata,
                      render_as_batch=True)
    with context.begin_transaction():
        context.run_migrations()
