"""Alembic migrations, run programmatically by matching_service.db.migrate()."""
