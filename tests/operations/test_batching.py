"""Micro-batching: concurrent requests share model calls, each gets its own row, a full queue says so at once."""

from __future__ import annotations

import asyncio
import threading
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from loopml.data.contract import infer_contract
from loopml.errors import LoopmlError, ModelError
from loopml.model import SearchPlan, search, split_holdout
from loopml.operations.batching import MicroBatcher, Overloaded
from loopml.operations.compiled import CompiledModel
from loopml.spec import GoalSpec

BENEFITS = Path(__file__).parents[2] / "examples/benefits/benefits.csv"


@pytest.fixture(scope="module")
def compiled_and_rows() -> tuple[CompiledModel, list[dict]]:
    """A linear model of the benefits survey, compiled, and 60 holdout records it has not seen."""
    frame = pd.read_csv(BENEFITS)
    train, holdout = split_holdout(frame, "ui", "binary", 0.2, seed=0)
    result = search(train, target="ui", task="binary", goal=GoalSpec(metric="roc_auc", at_least=0.6), positive="yes",
                    plan=SearchPlan(families=("linear",), folds=2))
    compiled = CompiledModel.from_model(result.model, infer_contract(frame, target="ui", task="binary"))
    return compiled, holdout.drop(columns=["ui"]).head(60).to_dict("records")


class Counting:
    """The compiled model's batch call, recording the size of every call it gets."""

    def __init__(self, compiled: CompiledModel):
        self.compiled = compiled
        self.calls: list[int] = []

    def __call__(self, records: list[dict]):
        self.calls.append(len(records))
        return self.compiled.predict_records(records)


def _gated(release: threading.Event, started: threading.Event):
    """A batch function that holds its first call until ``release`` is set (a slow model)."""

    def predict(records: list[dict]) -> list[int]:
        started.set()
        release.wait(10)
        return list(range(len(records)))

    return predict


def test_concurrent_requests_share_model_calls_and_each_gets_its_own_row(compiled_and_rows):
    compiled, rows = compiled_and_rows
    counting = Counting(compiled)

    async def main():
        batcher = MicroBatcher(counting, max_batch=16)
        results = await asyncio.gather(*(batcher.submit(r) for r in rows))
        await batcher.close()
        return results

    results = asyncio.run(main())
    assert len(counting.calls) < len(rows) and sum(counting.calls) == len(rows) and max(counting.calls) <= 16
    alone = compiled.predict_records(rows).rows()
    assert [r.label for r in results] == [a.label for a in alone]
    assert np.allclose([r.probability for r in results], [a.probability for a in alone], rtol=0, atol=1e-12)


def test_a_lone_request_does_not_wait_for_the_window(compiled_and_rows):
    compiled, rows = compiled_and_rows

    async def main():
        batcher = MicroBatcher(compiled.predict_records, max_wait_ms=500)  # a window no request may wait out
        await batcher.submit(rows[0])  # starts the worker thread
        times = []
        for r in rows[:20]:
            start = time.perf_counter()
            await batcher.submit(r)
            times.append(time.perf_counter() - start)
        await batcher.close()
        return times

    assert max(asyncio.run(main())) < 0.25


def test_requests_arriving_within_the_window_share_a_batch():
    release, started = threading.Event(), threading.Event()
    sizes: list[int] = []

    def predict(records):
        sizes.append(len(records))
        return _gated(release, started)(records)

    async def main():
        batcher = MicroBatcher(predict, max_batch=5, max_wait_ms=500)
        first = asyncio.ensure_future(batcher.submit({"i": 0}))
        while not started.is_set():
            await asyncio.sleep(0.001)
        early = [asyncio.ensure_future(batcher.submit({"i": i})) for i in (1, 2)]
        await asyncio.sleep(0)
        release.set()  # the next batch starts with two and waits for more
        await asyncio.sleep(0.02)
        late = [asyncio.ensure_future(batcher.submit({"i": i})) for i in (3, 4, 5)]
        await asyncio.gather(first, *early, *late)
        await batcher.close()

    asyncio.run(main())
    assert sizes == [1, 5]


def test_a_fast_lone_request_runs_on_the_event_loop_and_batches_in_the_worker_thread():
    threads: list[str] = []

    def predict(records):
        threads.append(threading.current_thread().name)
        return records

    async def main():
        batcher = MicroBatcher(predict)
        for i in range(3):  # the first call is measured in the worker thread; then a thread hop costs more
            await batcher.submit({"i": i})
        await asyncio.gather(*(batcher.submit({"i": i}) for i in range(4)))
        await batcher.close()

    asyncio.run(main())
    loop_thread = threading.current_thread().name
    assert threads[0] != loop_thread and threads[1:3] == [loop_thread, loop_thread]
    assert threads[3] != loop_thread  # a batch of several: the worker thread


def test_a_full_queue_refuses_at_once_with_a_retry_after():
    release, started = threading.Event(), threading.Event()

    async def main():
        batcher = MicroBatcher(_gated(release, started), max_batch=4, max_queue=8)
        first = asyncio.ensure_future(batcher.submit({"i": 0}))
        while not started.is_set():  # the first batch is now busy in the worker thread
            await asyncio.sleep(0.001)
        queued = [asyncio.ensure_future(batcher.submit({"i": i})) for i in range(8)]
        await asyncio.sleep(0)
        start = time.perf_counter()
        with pytest.raises(Overloaded, match=r"the model server is at capacity: 8 requests are waiting "
                                             r"\(max_queue 8\); retry in \d+ s") as refused:
            await batcher.submit({"i": 99})
        waited = time.perf_counter() - start
        release.set()
        done = await asyncio.gather(first, *queued)
        await batcher.close()
        return waited, refused.value.retry_after, done, batcher.stats

    waited, retry_after, done, stats = asyncio.run(main())
    assert waited < 0.05 and retry_after >= 1
    assert len(done) == 9 and stats.rejected == 1 and stats.rows == 9


def test_an_error_in_the_batch_call_reaches_every_request_of_the_batch():
    def broken(records):
        raise ModelError(f"the model failed on {len(records)} records")

    async def main():
        batcher = MicroBatcher(broken, max_batch=8)
        results = await asyncio.gather(*(batcher.submit({"i": i}) for i in range(5)), return_exceptions=True)
        await batcher.close()
        return results

    results = asyncio.run(main())
    assert all(isinstance(r, ModelError) for r in results)
    assert {str(r) for r in results} <= {f"the model failed on {n} records" for n in range(1, 6)}


def test_the_event_loop_stays_free_while_a_batch_runs():
    release, started = threading.Event(), threading.Event()

    async def main():
        batcher = MicroBatcher(_gated(release, started))
        pending = asyncio.ensure_future(batcher.submit({"i": 0}))
        while not started.is_set():
            await asyncio.sleep(0.001)
        ticks = 0
        for _ in range(5):  # the loop keeps running other work while the model call blocks its thread
            await asyncio.sleep(0.002)
            ticks += 1
        release.set()
        await pending
        await batcher.close()
        return ticks

    assert asyncio.run(main()) == 5


def test_a_cancelled_request_is_left_out_of_its_batch():
    release, started = threading.Event(), threading.Event()
    seen: list[list[dict]] = []

    def predict(records):
        seen.append(records)
        return _gated(release, started)(records)

    async def main():
        batcher = MicroBatcher(predict, max_batch=8)
        first = asyncio.ensure_future(batcher.submit({"i": 0}))
        while not started.is_set():
            await asyncio.sleep(0.001)
        gone, kept = asyncio.ensure_future(batcher.submit({"i": 1})), asyncio.ensure_future(batcher.submit({"i": 2}))
        await asyncio.sleep(0)
        gone.cancel()  # its client went away
        release.set()
        await asyncio.gather(first, kept)
        await batcher.close()

    asyncio.run(main())
    assert seen == [[{"i": 0}], [{"i": 2}]]


def test_a_closed_batcher_refuses_requests():
    async def main():
        batcher = MicroBatcher(lambda records: records)
        assert await batcher.submit({"i": 1}) == {"i": 1}
        await batcher.close()
        await batcher.submit({"i": 2})

    with pytest.raises(Overloaded, match=r"the model server is shutting down; send the request again shortly"):
        asyncio.run(main())


def test_a_batch_function_must_return_one_result_per_record():
    async def main():
        batcher = MicroBatcher(lambda records: [1])
        try:
            return await asyncio.gather(*(batcher.submit({"i": i}) for i in range(3)))
        finally:
            await batcher.close()

    with pytest.raises(ModelError, match=r"the batch function returned 1 results for 3 records; it must return one "
                                         r"result per record, in order"):
        asyncio.run(main())


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"predict": "model"}, r"MicroBatcher needs a callable that predicts a list of records; got str"),
    ({"max_batch": 0}, r"max_batch must be a positive number of records; got 0"),
    ({"max_wait_ms": -1}, r"max_wait_ms must be between 0 and 1000 milliseconds; got -1"),
    ({"max_queue": True}, r"max_queue must be a positive number of requests; got True"),
    ({"inline_ms": 50}, r"inline_ms must be between 0 and 10 milliseconds; got 50"),
])
def test_bad_settings_are_named(kwargs, message):
    args = {"predict": lambda records: records, **kwargs}
    with pytest.raises(LoopmlError, match=message):
        MicroBatcher(args.pop("predict"), **args)
