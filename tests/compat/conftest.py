"""The compat tests run on both event loops, like tests/integration: asyncio (debug mode) and
uvloop, which ``python -m aqueue worker`` runs on, so the lowest uvloop is exercised too."""

from __future__ import annotations

import pytest


@pytest.fixture(
    params=[("asyncio", {"debug": True}), ("asyncio", {"use_uvloop": True})],
    ids=["asyncio", "uvloop"],
)
def anyio_backend(request: pytest.FixtureRequest) -> tuple[str, dict[str, object]]:
    return request.param  # type: ignore[no-any-return]
