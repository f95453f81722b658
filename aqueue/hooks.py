"""Middleware and hooks around each attempt (stub: being written)."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .registry import Registry


class HookDecorators:
    """The App's decorators for middleware and hooks (mixed into :class:`aqueue.App`)."""

    registry: Registry
