"""A worker embedded in a web server's lifespan (Starlette; FastAPI's ``lifespan=`` is the
same). The request handler queues the welcome mail in the same transaction as the user row,
so a signup that rolls back sends nothing.

    pip install starlette uvicorn
    uvicorn examples.starlette_app:web
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from examples.mail import app, send_email
from examples.payloads_pb2 import SendEmail


@contextlib.asynccontextmanager
async def lifespan(_web: Starlette) -> AsyncIterator[None]:
    await app.migrate()
    async with app.worker(concurrency=16):
        yield  # the server serves requests; jobs run beside them
    await app.close()


async def signup(request: Request) -> JSONResponse:
    email = request.query_params["email"]
    assert app.engine is not None  # connected by the lifespan
    async with app.engine.begin() as conn:  # your own transaction (and your own tables)
        # ... INSERT INTO users ... would go here, on the same connection ...
        job_id = await app.enqueue(send_email, SendEmail(to=email, subject="Welcome!"), conn=conn)
    return JSONResponse({"queued": job_id})


web = Starlette(routes=[Route("/signup", signup, methods=["POST"])], lifespan=lifespan)
