"""In-process integration tests run on both event loops: asyncio (debug mode) and uvloop,
which is what ``python -m aqueue worker`` runs on."""

from __future__ import annotations

import pytest


@pytest.fixture(
    params=[("asyncio", {"debug": True}), ("asyncio", {"use_uvloop": True})],
    ids=["asyncio", "uvloop"],
)
def anyio_backend(request: pytest.FixtureRequest) -> tuple[str, dict[str, object]]:
    return request.param  # type: ignore[no-any-return]
