"""The declared schema of aqueue's tables, as SQLAlchemy Core metadata.

The numbered SQL migrations in ``aqueue/sql/migrations`` create exactly this (a test proves
it). Include it in your own Alembic autogenerate so Alembic leaves aqueue's tables alone::

    target_metadata = [my_metadata, aqueue.make_metadata("aqueue")]
"""

from __future__ import annotations

from sqlalchemy import (
    ARRAY,
    BigInteger,
    Column,
    DateTime,
    Enum,
    Identity,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    Table,
    Text,
    text,
)

from .config import SCHEMA_DEFAULT, validate_schema
from .jobs import JobState

__all__ = ["make_metadata", "metadata"]

CLAIMABLE = "state IN ('pending', 'error')"


def make_metadata(schema: str = SCHEMA_DEFAULT) -> MetaData:
    """Return a fresh :class:`~sqlalchemy.MetaData` with aqueue's tables in ``schema``."""
    validate_schema(schema)
    md = MetaData(schema=schema)
    state = Enum(
        JobState,
        name="job_state",
        schema=schema,
        values_callable=lambda states: [s.value for s in states],
        metadata=md,
    )
    jobs = Table(
        "background_jobs",
        md,
        Column("id", BigInteger, Identity(always=True), primary_key=True),
        Column("job_type", Text, nullable=False),
        Column("queue", Text, nullable=False, server_default=text("'default'")),
        Column("state", state, nullable=False, server_default=text("'pending'")),
        Column("queued", DateTime(timezone=True), nullable=False, server_default=text("now()")),
        Column(
            "next_attempt_after",
            DateTime(timezone=True),
            nullable=False,
            server_default=text("now()"),
        ),
        Column("try_count", Integer, nullable=False, server_default=text("0")),
        Column("max_tries", Integer, nullable=False, server_default=text("5")),
        Column("priority", Integer, nullable=False, server_default=text("10")),
        Column("payload", LargeBinary, nullable=False),
        Column("failure_info", Text, nullable=True),
        # The lease: who holds a running job, and until when (database clock).
        Column("worker_id", Text, nullable=True),
        Column("lease_expires_at", DateTime(timezone=True), nullable=True),
    )
    # Serves the claim: an index range scan in claim order over claimable rows only.
    Index(
        "background_jobs_claim_idx",
        jobs.c.priority.desc(),
        jobs.c.next_attempt_after,
        jobs.c.id,
        postgresql_where=text(CLAIMABLE),
    )
    # Serves the scheduler's "when is the next job due" without walking the claim order.
    Index(
        "background_jobs_next_due_idx",
        jobs.c.next_attempt_after,
        postgresql_where=text(CLAIMABLE),
    )
    # Serves the rescue of expired leases.
    Index(
        "background_jobs_lease_idx",
        jobs.c.lease_expires_at,
        postgresql_where=text("state = 'running'"),
    )
    Table(
        "aqueue_migrations",
        md,
        Column("version", Integer, primary_key=True, autoincrement=False),
        Column("name", Text, nullable=False),
        Column("applied_at", DateTime(timezone=True), nullable=False, server_default=text("now()")),
    )
    # Which job types and queues the running workers serve (queues NULL: every queue).
    Table(
        "workers",
        md,
        Column("worker_id", Text, primary_key=True),
        Column("job_types", ARRAY(Text), nullable=False),
        Column("queues", ARRAY(Text), nullable=True),
        Column("seen_at", DateTime(timezone=True), nullable=False, server_default=text("now()")),
        Column("expires_at", DateTime(timezone=True), nullable=False),
    )
    return md


metadata = make_metadata()
"""aqueue's tables in the default schema ``aqueue``."""
