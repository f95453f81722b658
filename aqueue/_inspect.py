"""Introspection from code: jobs by id, pages of jobs, retry, stats (stub: being written)."""

from __future__ import annotations


class Introspection:
    """The App's methods that read and revive jobs (mixed into :class:`aqueue.App`)."""
