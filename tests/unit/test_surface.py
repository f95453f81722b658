"""The public surface: exactly what __all__ says, each exception where its docstring says."""

from __future__ import annotations

import logging
import subprocess
import sys

import pytest

import aqueue
from aqueue._runtime.executor import TRUNCATED_MARKER, bound_text, format_failure
from aqueue._store.dsn import redact_dsn
from tests.payloads_pb2 import Task


def test_all_is_exact_and_importable() -> None:
    assert len(set(aqueue.__all__)) == len(aqueue.__all__)
    for name in aqueue.__all__:
        assert getattr(aqueue, name) is not None
    public = {n for n in vars(aqueue) if not n.startswith("_")}
    submodules = {"app", "backoff", "cli", "config", "errors", "jobs", "registry", "schema"}
    submodules.add("control")
    submodules |= {"periodic", "hooks", "_inspect"}  # periodic entries, hooks, introspection
    submodules.add("testing")  # loaded by `import aqueue.testing`, never by aqueue itself
    loaded_on_use = {"make_metadata", "metadata"}  # they load SQLAlchemy
    assert (public - submodules - {"annotations"}) | loaded_on_use == set(aqueue.__all__)


def test_a_worker_process_never_loads_sqlalchemy() -> None:
    """A worker on a DSN runs on asyncpg alone: SQLAlchemy would cost it ~20 MiB."""
    code = (
        "import sys, aqueue, aqueue.cli\n"
        "app = aqueue.App('postgresql://u:p@127.0.0.1:1/d')\n"
        "loaded = sorted(m for m in sys.modules if m.split('.')[0] == 'sqlalchemy')\n"
        "assert not loaded, loaded\n"
        "assert aqueue.metadata is not None and 'sqlalchemy' in sys.modules\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_exception_tree() -> None:
    assert issubclass(aqueue.ConfigurationError, aqueue.AqueueError)
    assert issubclass(aqueue.ConfigurationError, ValueError)
    assert issubclass(aqueue.EmbeddedUnavailableError, aqueue.ConfigurationError)
    assert issubclass(aqueue.PayloadError, TypeError)
    assert issubclass(aqueue.DatabaseError, aqueue.AqueueError)
    assert issubclass(aqueue.SchemaError, aqueue.DatabaseError)
    for exc in (
        aqueue.ConfigurationError,
        aqueue.PayloadError,
        aqueue.DatabaseError,
        aqueue.SchemaError,
        aqueue.JobFailed,
        aqueue.JobCancelled,
        aqueue.JobNotFound,
    ):
        assert issubclass(exc, aqueue.AqueueError)
        assert exc.__doc__
        assert "raised" in exc.__doc__.lower()


def test_result_exceptions_carry_the_job_and_pickle() -> None:
    import pickle

    assert issubclass(aqueue.JobNotFound, LookupError)
    failed = pickle.loads(pickle.dumps(aqueue.JobFailed(7, "Traceback ...")))
    assert (failed.job_id, failed.failure_info, str(failed)) == (7, "Traceback ...", "job 7 failed")
    assert pickle.loads(pickle.dumps(aqueue.JobCancelled(8))).job_id == 8
    assert pickle.loads(pickle.dumps(aqueue.JobNotFound(9))).job_id == 9


def test_job_decorator_checks_its_arguments() -> None:
    app = aqueue.App("postgresql://x@localhost/db")

    with pytest.raises(TypeError, match="async def"):
        app.job(payload=Task)(lambda payload: None)  # type: ignore[arg-type,return-value]
    with pytest.raises(TypeError, match="protobuf message class"):

        @app.job(payload=dict)  # type: ignore[type-var]
        async def not_proto(payload: dict) -> None: ...  # type: ignore[type-arg]

    @app.job(payload=Task)
    async def once(payload: Task) -> None: ...

    with pytest.raises(aqueue.ConfigurationError, match="already registered"):

        @app.job(payload=Task, name="once")
        async def twice(payload: Task) -> None: ...

    with pytest.raises(ValueError, match="max_tries"):

        @app.job(payload=Task, max_tries=0)
        async def never(payload: Task) -> None: ...

    assert once.name == "once"
    assert once.queue == "default"
    assert once.max_tries == 5


def test_failure_info_is_bounded_with_a_marker() -> None:
    text = "a" * 100 + "b" * 100
    cut = bound_text(text, 120)
    assert len(cut) == 120
    assert TRUNCATED_MARKER in cut
    assert cut.startswith("a")
    assert cut.endswith("b")
    try:
        raise KeyError("x" * 200_000)
    except KeyError as exc:
        info = format_failure(exc)
    assert len(info) <= 64 * 1024
    assert info.startswith("Traceback")
    assert TRUNCATED_MARKER in info


def test_redact_dsn_hides_the_password() -> None:
    redacted = redact_dsn("postgresql://user:canary-s3cret@db.example:5432/app")
    assert "canary-s3cret" not in redacted
    assert "user" in redacted
    assert "db.example" in redacted


async def test_connection_errors_never_show_the_password(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    # Nothing listens on port 1: the connection fails before authentication.
    app = aqueue.App("postgresql://someone:canary-s3cret@127.0.0.1:1/nowhere", schema="t_pw")
    with pytest.raises(aqueue.DatabaseError) as info:
        await app.enqueue("anything", Task())
    await app.close()
    assert info.value.operation == "enqueue"
    assert "canary-s3cret" not in str(info.value)
    assert "canary-s3cret" not in repr(info.value)
    assert all("canary-s3cret" not in r.getMessage() for r in caplog.records)
    assert any("someone:***@127.0.0.1:1" in r.getMessage() for r in caplog.records)


async def test_a_worker_needs_job_types() -> None:
    app = aqueue.App("postgresql://nobody@127.0.0.1:1/none")
    with pytest.raises(aqueue.ConfigurationError, match="no job types registered"):
        async with app.worker():
            pass
    assert await app.drain() == 0  # nothing to run: no database needed either
