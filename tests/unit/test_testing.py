"""aqueue.testing: a handler that reads current_job() runs in a test with the job the test
gives, and the job context ends with the call."""

from __future__ import annotations

import pytest

import aqueue
import aqueue.testing
from tests.payloads_pb2 import Other, Task

app = aqueue.App("postgresql://nobody@127.0.0.1:1/none")  # never connects
seen: list[tuple[aqueue.JobInfo, int]] = []


@app.job(payload=Task, queue="mail", max_tries=7)
async def reads_its_job(payload: Task) -> None:
    seen.append((aqueue.current_job(), payload.n))
    if payload.fail:
        raise RuntimeError("failed on purpose")


async def test_run_handler_gives_the_handler_its_job_and_takes_it_back() -> None:
    seen.clear()
    await aqueue.testing.run_handler(reads_its_job, Task(n=5), id=42, attempt=3)
    await aqueue.testing.run_handler(
        reads_its_job, Task(n=6), max_tries=9, queue="other", worker_id="w1"
    )
    assert seen == [
        (aqueue.JobInfo(42, "reads_its_job", "mail", 3, 7, "test"), 5),
        (aqueue.JobInfo(1, "reads_its_job", "other", 1, 9, "w1"), 6),
    ]
    with pytest.raises(LookupError):
        aqueue.current_job()


async def test_run_handler_lets_the_error_through_and_still_ends_the_context() -> None:
    with pytest.raises(RuntimeError, match="failed on purpose"):
        await aqueue.testing.run_handler(reads_its_job, Task(fail=True), id=8)
    with pytest.raises(LookupError):
        aqueue.current_job()


async def test_run_handler_checks_what_enqueue_checks() -> None:
    seen.clear()
    with pytest.raises(aqueue.PayloadError, match=r"takes .*Task payloads"):
        await aqueue.testing.run_handler(reads_its_job, Other())  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="attempt must be an int >= 1"):
        await aqueue.testing.run_handler(reads_its_job, Task(), attempt=0)
    with pytest.raises(ValueError, match="max_tries"):
        await aqueue.testing.run_handler(reads_its_job, Task(), max_tries=0)
    with pytest.raises(aqueue.ConfigurationError):
        await aqueue.testing.run_handler(reads_its_job, Task(), queue="bad queue!")
    with pytest.raises(TypeError, match="JobType"):
        await aqueue.testing.run_handler("reads_its_job", Task())  # type: ignore[arg-type]
    assert seen == []


async def test_run_handler_returns_what_the_handler_returned() -> None:
    @app.job(payload=Task, result=Task, name="doubles")
    async def doubles(payload: Task) -> Task:
        return Task(n=payload.n * 2)

    assert await aqueue.testing.run_handler(doubles, Task(n=4)) == Task(n=8)
