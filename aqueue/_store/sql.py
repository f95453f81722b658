"""Loads aqueue's SQL files once; one named statement per file, the file name is the name."""

from __future__ import annotations

import functools
import importlib.resources
import re
from dataclasses import dataclass

_MIGRATION_RE = re.compile(r"(\d{4})_([a-z0-9_]+)\.sql")


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    sql: str


@functools.cache
def raw_queries() -> dict[str, str]:
    folder = importlib.resources.files("aqueue").joinpath("sql", "queries")
    return {
        entry.name.removesuffix(".sql"): entry.read_text(encoding="utf-8")
        for entry in folder.iterdir()
        if entry.name.endswith(".sql")
    }


@functools.cache
def raw_migrations() -> tuple[Migration, ...]:
    folder = importlib.resources.files("aqueue").joinpath("sql", "migrations")
    found = []
    for entry in folder.iterdir():
        match = _MIGRATION_RE.fullmatch(entry.name)
        if match:
            found.append(Migration(int(match[1]), match[2], entry.read_text(encoding="utf-8")))
    found.sort(key=lambda m: m.version)
    if [m.version for m in found] != list(range(1, len(found) + 1)):
        raise RuntimeError(f"aqueue's migrations are not numbered 1..n: {found}")
    return tuple(found)


def render(sql: str, *, schema: str, channel: str) -> str:
    # ``schema`` was validated as a plain identifier; ``channel`` is derived from it.
    return sql.replace("{schema}", schema).replace("{channel}", channel)


def channel_for(schema: str) -> str:
    """The NOTIFY channel of one schema's jobs (an identifier: at most 63 bytes)."""
    return f"aqueue_{schema}"[:63]


def ended_channel_for(schema: str) -> str:
    """The NOTIFY channel that tells App.result's waiters of jobs that ended (migration 0008
    spells it the same way: left('{channel}', 57) || '_ended')."""
    return channel_for(schema)[:57] + "_ended"
