"""Job declarations shared by producers and workers (no database needed)."""

from __future__ import annotations

import pytest

import aqueue
from tests.payloads_pb2 import Other, Task

send = aqueue.declare("send", payload=Task, queue="mail", priority=20, max_tries=8)


def new_app() -> aqueue.App:
    return aqueue.App("postgresql://nobody@127.0.0.1:1/none")


def test_declare_checks_its_arguments() -> None:
    assert (send.name, send.payload, send.queue, send.priority, send.max_tries) == (
        "send",
        Task,
        "mail",
        20,
        8,
    )
    plain = aqueue.declare("plain", payload=Task)
    assert (plain.queue, plain.priority, plain.max_tries) == ("default", 10, 5)
    with pytest.raises(aqueue.ConfigurationError, match="queue name"):
        aqueue.declare("x", payload=Task, queue="no spaces")
    with pytest.raises(aqueue.ConfigurationError, match="job type"):
        aqueue.declare("", payload=Task)
    with pytest.raises(TypeError, match="protobuf message class"):
        aqueue.declare("x", payload=dict)  # type: ignore[type-var]
    with pytest.raises(ValueError, match="max_tries"):
        aqueue.declare("x", payload=Task, max_tries=0)
    with pytest.raises(TypeError, match="positional argument"):
        aqueue.declare("x", Task)  # type: ignore[misc]


def test_a_handler_bound_to_a_declaration_takes_its_name_payload_and_defaults() -> None:
    app = new_app()

    @app.job(send, timeout_s=30)  # worker-only options may be given
    async def deliver(payload: Task) -> None: ...

    assert isinstance(deliver, aqueue.JobType)
    assert isinstance(deliver, aqueue.JobDeclaration)  # a JobType works wherever one does
    assert (deliver.name, deliver.payload, deliver.queue) == ("send", Task, "mail")
    assert (deliver.priority, deliver.max_tries, deliver.timeout_s) == (20, 8, 30.0)
    assert app.registry.names() == ["send"]


@pytest.mark.parametrize(
    ("option", "value"),
    [
        ("payload", Other),
        ("name", "other"),
        ("queue", "default"),
        ("priority", 10),
        ("max_tries", 5),
    ],
)
def test_options_that_disagree_with_the_declaration_are_refused(option: str, value: object) -> None:
    app = new_app()
    with pytest.raises(aqueue.ConfigurationError, match=rf"{option}=.*disagrees"):
        app.job(send, **{option: value})  # type: ignore[arg-type]
    assert len(app.registry) == 0


def test_options_that_agree_with_the_declaration_are_accepted() -> None:
    app = new_app()

    @app.job(send, payload=Task, name="send", queue="mail", priority=20, max_tries=8)
    async def deliver(payload: Task) -> None: ...

    assert deliver.queue == "mail"


def test_job_needs_a_payload_or_a_declaration() -> None:
    app = new_app()
    with pytest.raises(TypeError, match="needs payload="):
        app.job()
    with pytest.raises(TypeError, match=r"declaration from aqueue\.declare"):
        app.job("send")  # type: ignore[arg-type]


async def test_enqueue_checks_a_declarations_payload_before_any_sql() -> None:
    app = new_app()  # nothing listens there: reaching the database would fail otherwise
    with pytest.raises(aqueue.PayloadError, match=r"takes aqueue\.tests\.v1\.Task payloads"):
        await app.enqueue(send, Other())  # type: ignore[arg-type]
    with pytest.raises(aqueue.PayloadError):
        await app.enqueue_many(send, [Task(), Other()])
