"""Registering a handler: what is refused at once, and what is accepted."""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

import aqueue
from tests.payloads_pb2 import Task


def new_app() -> aqueue.App:
    return aqueue.App("postgresql://nobody@127.0.0.1:1/none")


async def no_parameter() -> None: ...


async def two_required(payload: Task, other: int) -> None: ...


async def required_keyword(payload: Task, *, other: int) -> None: ...


def plain_def(payload: Task) -> None: ...


@pytest.mark.parametrize(
    ("handler", "message"),
    [
        (no_parameter, r"no_parameter.*exactly one positional argument.*takes \(\)"),
        (two_required, r"two_required.*exactly one positional argument.*\(payload, other\)"),
        (required_keyword, r"required_keyword.*keyword-only.*'other'"),
        (plain_def, r"plain_def.*'async def'"),
        (functools.partial(two_required), r"two_required.*exactly one positional argument"),
    ],
)
def test_a_handler_that_cannot_take_the_payload_is_refused_at_registration(
    handler: Any, message: str
) -> None:
    app = new_app()
    with pytest.raises(TypeError, match=message):
        app.job(payload=Task, name="t")(handler)
    assert len(app.registry) == 0  # nothing half-registered


async def with_defaults(
    payload: Task, retries: int = 3, *args: Any, flag: bool = False
) -> None: ...


async def only_varargs(*args: Any) -> None: ...


class Sender:
    async def __call__(self, payload: Task) -> None: ...


async def send(payload: Task, prefix: str) -> None: ...


def test_handlers_that_take_one_positional_argument_are_accepted() -> None:
    app = new_app()
    assert app.job(payload=Task)(with_defaults).name == "with_defaults"
    assert app.job(payload=Task)(only_varargs).name == "only_varargs"
    # A callable object with an async __call__, and a partial of an async function: they
    # have no __name__ of their own to take a job type from, so they need name=.
    assert app.job(payload=Task, name="sender")(Sender()).name == "sender"
    bound = functools.partial(send, prefix="hi")
    with pytest.raises(
        TypeError, match=r"partial\(.*send, \.\.\.\) must accept exactly one positional"
    ):
        app.job(payload=Task, name="bad_partial")(functools.partial(send, payload=Task()))
    assert app.job(payload=Task, name="greet")(bound).name == "greet"
    with pytest.raises(aqueue.ConfigurationError, match="has no __name__: pass name="):
        app.job(payload=Task)(Sender())
    assert app.registry.names() == ["greet", "only_varargs", "sender", "with_defaults"]


def test_a_callable_object_without_async_call_is_refused() -> None:
    class SyncSender:
        def __call__(self, payload: Task) -> None: ...

    with pytest.raises(TypeError, match="'async def'"):
        new_app().job(payload=Task, name="s")(SyncSender())  # type: ignore[arg-type]


async def test_accepted_callables_run_when_called() -> None:
    seen: list[str] = []

    class Recorder:
        async def __call__(self, payload: Task) -> None:
            seen.append(payload.label)

    async def record(payload: Task, suffix: str) -> None:
        seen.append(payload.label + suffix)

    app = new_app()
    obj = app.job(payload=Task, name="obj")(Recorder())
    part = app.job(payload=Task, name="part")(functools.partial(record, suffix="!"))
    await obj(Task(label="a"))
    await part(Task(label="b"))
    assert seen == ["a", "b!"]


def test_a_decorator_that_injects_arguments_is_checked_as_called() -> None:
    """functools.wraps sets __wrapped__; the signature that counts is the wrapper's, the
    callable aqueue calls, not the wrapped function's (which takes what the decorator adds)."""

    def with_db(handler: Callable[..., Awaitable[None]]) -> Callable[[Task], Awaitable[None]]:
        @functools.wraps(handler)
        async def wrapper(payload: Task) -> None:
            await handler(payload, db="a connection")

        return wrapper

    @with_db
    async def save(payload: Task, db: str) -> None: ...

    assert new_app().job(payload=Task)(save).name == "save"
