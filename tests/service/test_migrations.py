"""The schema comes only from migrations; they match the models on both databases and are safe
to run again."""
from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from matching_service import db
from matching_service.settings import normalise_db_url


def test_migrated_schema_matches_the_models_and_migrating_again_is_a_no_op(service):
    engine = db.make_engine(normalise_db_url(service.db_url))
    try:
        db.migrate(engine)  # the running server already migrated: this must change nothing
        assert db.current_revision(engine) == "0001"
        with engine.connect() as connection:
            diff = compare_metadata(MigrationContext.configure(connection), db.load_models())
        assert diff == []
    finally:
        engine.dispose()
