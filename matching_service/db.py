"""Database plumbing: the declarative base, engine/session factory, and programmatic migrations.

SQLite (embedded default) and PostgreSQL (production) run the same schema, created only by
Alembic migrations (`migrate()`), never by `create_all`, so both stay on one history.
"""
from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.orm import DeclarativeBase, Session, sessionmaker

MIGRATIONS_DIR = Path(__file__).parent / "migrations"


class Base(DeclarativeBase):
    metadata = sa.MetaData(naming_convention={
        "ix": "ix_%(column_0_label)s",
        "uq": "uq_%(table_name)s_%(column_0_name)s",
        "ck": "ck_%(table_name)s_%(constraint_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    })


def load_models() -> sa.MetaData:
    """Import every capability's models so Base.metadata knows all tables."""
    from matching_service.auth import models as _auth  # noqa: F401
    from matching_service.cases import models as _cases  # noqa: F401
    from matching_service.registry import models as _registry  # noqa: F401
    from matching_service.uploads import models as _uploads  # noqa: F401
    from matching_service.reports import models as _reports  # noqa: F401
    return Base.metadata


def make_engine(db_url: str) -> sa.Engine:
    if db_url.startswith("sqlite"):
        path = db_url[len("sqlite:///"):]
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        engine = sa.create_engine(db_url, connect_args={"check_same_thread": False, "timeout": 30})

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_connection, _record):
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.close()
        return engine
    return sa.create_engine(db_url, pool_pre_ping=True, pool_size=5, max_overflow=10)


def session_factory(engine: sa.Engine) -> sessionmaker[Session]:
    return sessionmaker(engine, expire_on_commit=False)


@contextmanager
def transaction(factory: sessionmaker[Session]) -> Iterator[Session]:
    """One unit of work: commit on success, roll back on any exception."""
    session = factory()
    try:
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()


def alembic_config(engine: sa.Engine):
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.set_main_option("sqlalchemy.url",
                           engine.url.render_as_string(hide_password=False).replace("%", "%%"))
    return config


def migrate(engine: sa.Engine, revision: str = "head") -> None:
    """Bring the schema to `revision` (default: latest). Safe to run at every start-up."""
    from alembic import command

    config = alembic_config(engine)
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, revision)


def current_revision(engine: sa.Engine) -> str | None:
    from alembic.runtime.migration import MigrationContext

    with engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


def insert_ignoring_duplicates(session: Session, table, rows: list[dict], keys: list[str]) -> int:
    """Bulk INSERT that skips rows whose `keys` already exist (a concurrent replay), on both
    SQLite and PostgreSQL. Returns how many rows were actually inserted."""
    if not rows:
        return 0
    dialect = session.get_bind().dialect.name
    if dialect == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    else:
        from sqlalchemy.dialects.sqlite import insert
    statement = insert(table).on_conflict_do_nothing(index_elements=keys).returning(
        *[table.c[k] for k in keys])
    inserted = 0
    for start in range(0, len(rows), 5000):
        inserted += len(session.execute(statement, rows[start:start + 5000]).all())
    return inserted
