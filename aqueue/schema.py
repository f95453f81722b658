"""The declared schema of aqueue's tables, as SQLAlchemy Core metadata.

The numbered SQL migrations in ``aqueue/sql/migrations`` create exactly this (a test proves
it). Include it in your own Alembic autogenerate so Alembic leaves aqueue's tables alone::

    target_metadata = [my_metadata, aqueue.make_metadata("aqueue")]
"""

from __future__ import annotations

from sqlalchemy import (
    ARRAY,
    DDL,
    BigInteger,
    Boolean,
    CheckConstraint,
    Column,
    DateTime,
    Enum,
    Identity,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    Sequence,
    SmallInteger,
    Table,
    Text,
    UniqueConstraint,
    event,
    text,
)

from .config import SCHEMA_DEFAULT, validate_schema
from .jobs import JobState

__all__ = ["make_metadata", "metadata"]

RING_SLOTS = 8  # partitions in each ring of finished jobs (jobs_done, jobs_failed)


def _job_columns(state: Enum) -> list[Column[object]]:
    """The columns every job table shares, in the view's order (a fresh set per table)."""
    return [
        Column("id", BigInteger, primary_key=True, autoincrement=False),
        Column("job_type", Text, nullable=False),
        Column("queue", Text, nullable=False),
        Column("state", state, nullable=False),
        Column("queued", DateTime(timezone=True), nullable=False),
        Column("next_attempt_after", DateTime(timezone=True), nullable=False),
        Column("try_count", Integer, nullable=False),
        Column("max_tries", Integer, nullable=False),
        Column("priority", Integer, nullable=False),
        Column("payload", LargeBinary, nullable=False),
        Column("failure_info", Text, nullable=True),
        Column("worker_id", Text, nullable=True),
    ]


def _snoozes() -> Column[int]:
    # Snoozes in a row with no counted attempt between them (aqueue.Snooze).
    return Column("snoozes", Integer, nullable=False, server_default=text("0"))


def make_metadata(schema: str = SCHEMA_DEFAULT) -> MetaData:
    """Return a fresh :class:`~sqlalchemy.MetaData` with aqueue's tables in ``schema``.

    The jobs live in one table per state (see docs/design/storage.md); users query them
    through the view ``background_jobs``, which the migrations create and this metadata does
    not declare (Alembic leaves views alone). The finished rows' rings are partitioned
    tables whose partitions (``jobs_done_0`` .. ``jobs_done_7``, ``jobs_failed_0`` ..) are
    created by DDL attached to their parents: tell Alembic's autogenerate to skip them, e.g.
    ``include_name=lambda name, type_, parent: not re.fullmatch(r"jobs_(done|failed)_\\d+",
    name or "")``.
    """
    validate_schema(schema)
    md = MetaData(schema=schema)
    state = Enum(
        JobState,
        name="job_state",
        schema=schema,
        values_callable=lambda states: [s.value for s in states],
        metadata=md,
    )
    Sequence("job_id_seq", schema=schema, metadata=md)  # the ids of new jobs
    ready_seq = Sequence("ready_seq", schema=schema, metadata=md)  # order within a lane
    # One row per (job_type, queue, priority) ever enqueued: the claim reads only the lanes
    # of the types and queues it serves.
    Table(
        "lanes",
        md,
        Column("lane_id", Integer, Identity(always=True), primary_key=True),
        Column("job_type", Text, nullable=False),
        Column("queue", Text, nullable=False),
        Column("priority", Integer, nullable=False),
        UniqueConstraint("job_type", "queue", "priority"),
    )
    waiting = "state IN ('pending', 'error')"
    ready = Table(
        "jobs_ready",
        md,
        *_job_columns(state),
        Column("lane_id", Integer, nullable=False),
        Column("seq", BigInteger, nullable=False, server_default=ready_seq.next_value()),
        _snoozes(),
        Column("unique_key", Text, nullable=True),
        CheckConstraint(waiting),
    )
    # The claim's cursor scan: seq past the lane's cursor, in order.
    Index("jobs_ready_lane_idx", ready.c.lane_id, ready.c.seq)
    delayed = Table(
        "jobs_delayed",
        md,
        *_job_columns(state),
        _snoozes(),
        Column("unique_key", Text, nullable=True),
        CheckConstraint(waiting),
    )
    Index("jobs_delayed_due_idx", delayed.c.next_attempt_after)
    Index("jobs_delayed_type_due_idx", delayed.c.job_type, delayed.c.next_attempt_after)
    running_columns = [c for c in _job_columns(state) if c.name != "state"]
    running_columns[-1] = Column("worker_id", Text, nullable=False)
    running = Table(
        "jobs_running",
        md,
        *running_columns,
        # The worker's claim that took it: a claim whose reply was lost is handed back.
        Column("claim_no", BigInteger, nullable=False),
        Column("claimed_at", DateTime(timezone=True), nullable=False),
        _snoozes(),
        Column("unique_key", Text, nullable=True),
        # Claimed under a fleet-wide limit of its type.
        Column("limited", Boolean, nullable=False, server_default=text("false")),
    )
    Index("jobs_running_worker_idx", running.c.worker_id, running.c.claim_no)
    # Counts a limited type's running attempts (global_concurrency).
    Index("jobs_running_type_idx", running.c.job_type, postgresql_where=text("limited"))
    # Unique jobs: (job_type, key) -> the waiting or running job that holds the key.
    Table(
        "unique_keys",
        md,
        Column("job_type", Text, primary_key=True),
        Column("key", Text, primary_key=True),
        Column("job_id", BigInteger, nullable=False),
    )
    # Fleet-wide limits: a claim locks a limited type's row while it starts attempts of it;
    # starts holds the start times inside the latest rate window.
    Table(
        "job_limits",
        md,
        Column("job_type", Text, primary_key=True),
        Column("starts", ARRAY(DateTime(timezone=True)), nullable=False, server_default="{}"),
    )
    for ring, check in (
        ("done", "state IN ('completed', 'cancelled')"),
        ("failed", "state = 'failed'"),
    ):
        columns = _job_columns(state)
        columns[0] = Column("id", BigInteger, nullable=False, autoincrement=False)
        finished = Table(
            f"jobs_{ring}",
            md,
            *columns,
            Column("finished_at", DateTime(timezone=True), nullable=False),
            Column("slot", SmallInteger, nullable=False),
            # When the finishing attempt started (NULL: cancelled before it ran), and what
            # the handler returned (a type declared with result=).
            Column("started_at", DateTime(timezone=True), nullable=True),
            Column("result", LargeBinary, nullable=True),
            CheckConstraint(check),
            postgresql_partition_by="LIST (slot)",
        )
        Index(f"jobs_{ring}_id_idx", finished.c.id)
        for slot in range(RING_SLOTS):
            event.listen(
                finished,
                "after_create",
                DDL(  # type: ignore[no-untyped-call]
                    f"CREATE TABLE {schema}.jobs_{ring}_{slot} PARTITION OF {schema}.jobs_{ring} "
                    f"FOR VALUES IN ({slot})"
                ),
            )
    # Each ring's current slot and when each slot stopped taking rows (per slot; NULL: never
    # used). Updated once per rotation, never per job.
    Table(
        "rings",
        md,
        Column("ring", Text, CheckConstraint("ring IN ('done', 'failed')"), primary_key=True),
        Column("slot", SmallInteger, nullable=False),
        Column("started_at", DateTime(timezone=True), nullable=False),
        Column("ended_at", ARRAY(DateTime(timezone=True)), nullable=False),
    )
    # Calls of App.result waiting for a job to end: ending it NOTIFYs them.
    awaited = Table(
        "awaited",
        md,
        Column("waiter_id", BigInteger, Identity(always=True), primary_key=True),
        Column("job_id", BigInteger, nullable=False),
        Column("since", DateTime(timezone=True), nullable=False, server_default=text("now()")),
    )
    Index("awaited_job_idx", awaited.c.job_id)
    # Periodic entries: the latest tick each took (moved forward under the row's lock, so
    # each tick is taken once fleet-wide) and the job it enqueued then.
    Table(
        "periodic",
        md,
        Column("name", Text, primary_key=True),
        Column("job_type", Text, nullable=False),
        Column("last_tick", DateTime(timezone=True), nullable=False),
        Column("last_job_id", BigInteger, nullable=True),
        Column("updated_at", DateTime(timezone=True), nullable=False, server_default=text("now()")),
    )
    Table(
        "aqueue_migrations",
        md,
        Column("version", Integer, primary_key=True, autoincrement=False),
        Column("name", Text, nullable=False),
        Column("applied_at", DateTime(timezone=True), nullable=False, server_default=text("now()")),
    )
    # Which job types and queues the running workers serve (queues NULL: every queue), and
    # each worker's lease: its running jobs are rescued once expires_at has passed.
    Table(
        "workers",
        md,
        Column("worker_id", Text, primary_key=True),
        Column("job_types", ARRAY(Text), nullable=False),
        Column("queues", ARRAY(Text), nullable=True),
        Column("seen_at", DateTime(timezone=True), nullable=False, server_default=text("now()")),
        Column("expires_at", DateTime(timezone=True), nullable=False),
        # The backend holding the leader's advisory lock, on the leader's row.
        Column("leader_pid", Integer, nullable=True),
    )
    return md


metadata = make_metadata()
"""aqueue's tables in the default schema ``aqueue``."""
