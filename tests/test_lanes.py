"""serve.lanes.Lane: a lone text runs at once; texts that queue while the model runs go
together into its next call; a request that gave up is left out; an inline lane runs its calls
on the event loop and still batches what arrived during a call."""

from __future__ import annotations

import asyncio
import threading
import time

from serve.lanes import Lane


class Model:
    """Records each call's texts; each call takes ``seconds``."""

    def __init__(self, seconds: float = 0.05) -> None:
        self.calls: list[list[str]] = []
        self.seconds = seconds
        self.threads: set[str] = set()

    def __call__(self, texts: list[str]) -> list[str]:
        self.calls.append(list(texts))
        self.threads.add(threading.current_thread().name)
        time.sleep(self.seconds)
        return [text.upper() for text in texts]


def test_a_lone_text_runs_at_once_on_the_lane_thread() -> None:
    model = Model(0.0)

    async def main():
        lane = Lane(model, max_batch_size=8, name="t")
        started = time.perf_counter()
        result, call_started, seconds = await lane.submit("hola")
        return result, call_started - started

    result, waited = asyncio.run(main())
    assert result == "HOLA" and waited < 0.05
    assert model.calls == [["hola"]] and all(t.startswith("profner-t") for t in model.threads)


def test_texts_that_queue_while_a_call_runs_go_together_into_the_next() -> None:
    model = Model(0.05)

    async def main():
        lane = Lane(model, max_batch_size=4, name="t")
        first = asyncio.ensure_future(lane.submit("a"))
        await asyncio.sleep(0.01)  # "a" is running: the next six queue behind it
        rest = [asyncio.ensure_future(lane.submit(t)) for t in "bcdefg"]
        return [r[0] for r in await asyncio.gather(first, *rest)]

    assert asyncio.run(main()) == list("ABCDEFG")
    assert model.calls == [["a"], ["b", "c", "d", "e"], ["f", "g"]]


def test_a_request_that_gave_up_is_left_out_of_the_next_call() -> None:
    model = Model(0.05)

    async def main():
        lane = Lane(model, max_batch_size=4, name="t")
        first = asyncio.ensure_future(lane.submit("a"))
        await asyncio.sleep(0.01)
        gone = asyncio.ensure_future(lane.submit("b"))
        kept = asyncio.ensure_future(lane.submit("c"))
        await asyncio.sleep(0)
        gone.cancel()
        return (await first)[0], (await kept)[0]

    assert asyncio.run(main()) == ("A", "C")
    assert model.calls == [["a"], ["c"]]


def test_a_model_error_reaches_every_text_of_its_call() -> None:
    def broken(texts):
        raise RuntimeError("boom")

    async def main():
        lane = Lane(broken, max_batch_size=4, name="t")
        return await lane.submit("a")

    result, _, _ = asyncio.run(main())
    assert isinstance(result, RuntimeError)


def test_an_inline_lane_runs_on_the_loop_and_batches_what_arrived_during_a_call() -> None:
    model = Model(0.0)
    arrivals: list[asyncio.Future] = []

    async def arrive(lane: Lane, text: str) -> str:
        await asyncio.sleep(0)  # a request's socket read and ASGI task come first
        return (await lane.submit(text))[0]

    def calls(lane: Lane, texts: list[str]) -> list[str]:
        if not arrivals:  # three requests come in while the first call holds the loop
            arrivals.extend(asyncio.ensure_future(arrive(lane, t)) for t in "def")
        return model(texts)

    async def main():
        lane = Lane(lambda texts: calls(lane, texts), max_batch_size=2, name="t", inline=True)
        queued = await asyncio.gather(*(lane.submit(t) for t in "abc"))
        return [r[0] for r in queued] + await asyncio.gather(*arrivals)

    assert asyncio.run(main()) == list("ABCDEF")
    # "c" waited in the queue: the next call also takes what arrived meanwhile
    assert model.calls == [["a", "b"], ["c", "d"], ["e", "f"]]
    assert model.threads == {threading.main_thread().name}
