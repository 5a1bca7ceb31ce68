"""`@seeded` and `@deterministic(...)`: every callable kind, each call in its own stream."""

from __future__ import annotations

import asyncio
import inspect
import random
from collections.abc import AsyncIterator, Iterator
from typing import Any

import numpy as np
import pytest
from conftest import classic_recipe, draws, full_state, outside_state_restored

from deterministic import derive_seed, deterministic, seeded


def test_bare_seeded_is_stable_per_function() -> None:
    """Bare @seeded gives the same result on every call, from a seed derived from the name."""
    before = full_state()

    @seeded
    def sample() -> tuple[object, ...]:
        return draws()

    first, second = sample(), sample()
    assert first == second
    assert full_state() == before
    expected_seed = derive_seed("seeded", __name__, sample.__qualname__)
    with deterministic(expected_seed):
        assert draws() == first


def test_different_functions_get_different_streams() -> None:
    """Two differently named functions decorated with bare @seeded draw different values."""

    @seeded
    def one() -> float:
        return random.random()

    @seeded
    def two() -> float:
        return random.random()

    assert one() != two()


@pytest.mark.parametrize(
    "decorator",
    [seeded(5), seeded(seed=5), deterministic(5)],
    ids=["positional", "keyword", "deterministic"],
)
def test_explicit_seed_forms(decorator: object) -> None:
    """@seeded(5), @seeded(seed=5) and @deterministic(5) all run calls seeded with 5."""

    @decorator  # type: ignore[misc]
    def sample() -> tuple[object, ...]:
        return draws()

    with deterministic(5):
        expected = draws()
    assert sample() == expected


def test_seeded_empty_call_equals_bare() -> None:
    """@seeded() is the same as bare @seeded."""

    def sample() -> float:
        return random.random()

    assert seeded()(sample)() == seeded(sample)()


@pytest.mark.parametrize(
    "decorator",
    [seeded(None), seeded(seed=None), deterministic(None)],
    ids=["positional", "keyword", "config"],
)
def test_seed_none_draws_fresh_per_call(decorator: Any, caplog: pytest.LogCaptureFixture) -> None:
    """@seeded(None), @seeded(seed=None) and @deterministic(None) all draw a fresh, logged seed per call."""

    @decorator  # type: ignore[misc]
    def sample() -> float:
        return random.random()

    before = full_state()
    with caplog.at_level("INFO", logger="deterministic"):
        values = [sample() for _ in range(5)]
    assert full_state() == before
    assert len(set(values)) == 5
    logged = [record.getMessage() for record in caplog.records if record.name == "deterministic"]
    assert len(logged) == 5


def test_seed_given_twice_is_type_error() -> None:
    """@seeded(None, seed=5) gives the seed twice and is refused."""
    with pytest.raises(TypeError, match="both positionally and as seed="):
        seeded(None, seed=5)


def test_seeded_validates_at_decoration() -> None:
    """Bad seeds and keywords fail when decorating, and a seed given twice is rejected."""
    with pytest.raises(TypeError, match="seed must be"):
        seeded(1.5)
    with pytest.raises(TypeError, match="cudnn_benchmark"):
        seeded(cudnn_benchmark="yes")
    with pytest.raises(ValueError, match="unknown source"):
        seeded(sources=("bogus",))
    with pytest.raises(TypeError, match="both"):
        seeded(1, seed=2)


def test_decorating_a_class_is_type_error() -> None:
    """Classes are refused with a clear error instead of wrapping every method."""
    with pytest.raises(TypeError, match="cannot decorate class"):

        @seeded
        class Model:
            pass

    with pytest.raises(TypeError, match="cannot decorate class"):
        deterministic(1)(int)
    with pytest.raises(TypeError, match="can only decorate"):
        deterministic(1)(42)  # type: ignore[arg-type]


def test_metadata_and_signature_kept() -> None:
    """The decorated function keeps name, qualname, doc, module and signature."""

    def original(a: int, b: str = "x", *, c: float = 1.0) -> float:
        """Docstring."""
        return random.random()

    decorated = seeded(original)
    for attribute in ("__name__", "__qualname__", "__doc__", "__module__"):
        assert getattr(decorated, attribute) == getattr(original, attribute)
    assert inspect.signature(decorated) == inspect.signature(original)


def test_kind_predicates_stay_true() -> None:
    """inspect still recognises decorated generator, coroutine and async generator functions."""

    def gen() -> Iterator[int]:
        yield 1

    async def coro() -> int:
        return 1

    async def agen() -> AsyncIterator[int]:
        yield 1

    assert inspect.isgeneratorfunction(seeded(gen))
    assert inspect.iscoroutinefunction(seeded(coro))
    assert inspect.isasyncgenfunction(seeded(agen))
    assert inspect.isgenerator(seeded(gen)())
    coroutine = seeded(coro)()
    assert inspect.iscoroutine(coroutine)
    assert asyncio.run(coroutine) == 1
    assert inspect.isasyncgen(seeded(agen)())


class Sampler:
    """Methods of every binding kind, decorated outermost."""

    def __init__(self, offset: float) -> None:
        self.offset = offset

    @seeded(3)
    def method(self, scale: float) -> float:
        """A method."""
        return self.offset + scale * random.random()

    @seeded(3)
    @classmethod
    def klass(cls, scale: float) -> tuple[str, float]:
        """A classmethod."""
        return cls.__name__, scale * random.random()

    @seeded(3)
    @staticmethod
    def static(scale: float) -> float:
        """A staticmethod."""
        return scale * random.random()


def test_methods_bind_correctly() -> None:
    """Methods, classmethods and staticmethods bind as undecorated ones and are seeded."""
    random_3 = random.Random(3).random()
    assert Sampler(1.0).method(2.0) == 1.0 + 2.0 * random_3
    assert Sampler.klass(2.0) == ("Sampler", 2.0 * random_3)
    assert Sampler(0).klass(2.0) == ("Sampler", 2.0 * random_3)
    assert Sampler.static(2.0) == 2.0 * random_3
    assert Sampler(0).static(2.0) == 2.0 * random_3
    assert Sampler.method.__doc__ == "A method."


def test_function_restores_on_exception() -> None:
    """A decorated function that raises still restores everything."""
    before = full_state()

    @seeded(1)
    def explode() -> None:
        draws()
        raise KeyError("boom")

    with pytest.raises(KeyError):
        explode()
    assert full_state() == before


def test_recursive_decorated_function() -> None:
    """Recursion through a decorated function nests scopes without crashing."""
    before = full_state()

    @seeded(2)
    def depth(n: int) -> list[float]:
        first = random.random()
        return [first, *depth(n - 1)] if n else [first]

    assert depth(4) == [random.Random(2).random()] * 5
    assert full_state() == before


@seeded(8)
def numbers(count: int) -> Iterator[tuple[object, ...]]:
    """Yield `count` draws, then return "done"."""
    for _ in range(count):
        yield draws()
    return "done"


def test_generator_stream_independent_of_caller() -> None:
    """A decorated generator yields the same values whatever the caller draws between steps."""
    before = full_state()
    quiet = list(numbers(3))
    with outside_state_restored():
        noisy = []
        for value in numbers(3):
            noisy.append(value)
            draws()
    assert noisy == quiet
    assert full_state() == before
    with deterministic(8):
        assert quiet == [draws(), draws(), draws()]


def test_generator_steps_do_not_touch_caller_stream() -> None:
    """The caller's stream is unaffected by the generator's steps."""
    with outside_state_restored():
        classic_recipe(50)
        expected = [draws(), draws()]
        classic_recipe(50)
        got = [draws()]
        next(numbers(5))
        got.append(draws())
    assert got[0] == expected[0]
    assert got[1] == expected[1]


def test_generator_send_throw_close_and_return() -> None:
    """send, throw, close and the return value pass through the wrapper."""
    before = full_state()

    @seeded(1)
    def echo() -> Iterator[object]:
        received = yield "start"
        try:
            while True:
                received = yield ("got", received, random.random())
        except ValueError as error:
            yield ("caught", str(error))
        finally:
            random.random()  # cleanup draws happen in the generator's stream
        return "unreachable"

    gen = echo()
    assert next(gen) == "start"
    reply = gen.send("hello")
    assert reply[:2] == ("got", "hello")
    assert gen.throw(ValueError("bad")) == ("caught", "bad")
    gen.close()
    assert full_state() == before

    def returning() -> Iterator[int]:
        yield 1
        return 7

    wrapped = seeded(returning)()
    next(wrapped)
    with pytest.raises(StopIteration) as stop:
        next(wrapped)
    assert stop.value.value == 7


def test_abandoned_generator_leaves_state_untouched() -> None:
    """A half-consumed generator that is dropped leaves global state exactly as before."""
    before = full_state()

    @seeded(1)
    def endless() -> Iterator[float]:
        try:
            while True:
                yield random.random()
        finally:
            np.random.rand()

    gen = endless()
    next(gen)
    next(gen)
    del gen
    assert full_state() == before


def test_yield_inside_own_with_block() -> None:
    """A generator may yield inside its own `with deterministic` block; each stream stays exact."""
    before = full_state()

    @seeded(1)
    def nested() -> Iterator[float]:
        with deterministic(2):
            yield random.random()
            yield random.random()
        yield random.random()

    with outside_state_restored():
        values = []
        for value in nested():
            values.append(value)
            random.random()
    two = random.Random(2)
    assert values == [two.random(), two.random(), random.Random(1).random()]
    assert full_state() == before


def test_coroutine_runs_seeded() -> None:
    """A decorated coroutine is a real coroutine, runs seeded and returns its value."""
    before = full_state()

    @seeded(6)
    async def work() -> tuple[object, ...]:
        first = draws()
        await asyncio.sleep(0)
        return first + draws()

    result = asyncio.run(work())
    assert full_state() == before
    with deterministic(6):
        assert result == draws() + draws()


def test_concurrent_tasks_get_solo_results() -> None:
    """Concurrent tasks with different seeds each get exactly their solo results."""
    before = full_state()

    def make(seed: int) -> object:
        @seeded(seed)
        async def work() -> list[tuple[object, ...]]:
            out = []
            for _ in range(4):
                out.append(draws())
                await asyncio.sleep(0)
            return out

        return work

    workers = [make(seed) for seed in (1, 2, 3)]

    async def together() -> list[object]:
        return list(await asyncio.gather(*(w() for w in workers)))  # type: ignore[operator]

    async def alone(worker: object) -> object:
        return await worker()  # type: ignore[operator]

    concurrent = asyncio.run(together())
    solo = [asyncio.run(alone(w)) for w in workers]
    assert concurrent == solo
    assert full_state() == before


def test_coroutine_exception_and_cancel_restore() -> None:
    """A decorated coroutine that raises or is cancelled leaves state exact."""
    before = full_state()

    @seeded(1)
    async def failing() -> None:
        draws()
        await asyncio.sleep(0)
        raise LookupError("x")

    @seeded(1)
    async def sleeper() -> None:
        draws()
        await asyncio.sleep(10)

    async def main() -> None:
        with pytest.raises(LookupError):
            await failing()
        task = asyncio.create_task(sleeper())
        await asyncio.sleep(0)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(main())
    assert full_state() == before


def test_async_generator_keeps_its_stream() -> None:
    """A decorated async generator yields the same values whatever the caller draws."""
    before = full_state()

    @seeded(4)
    async def stream() -> AsyncIterator[float]:
        for _ in range(3):
            await asyncio.sleep(0)
            yield random.random()

    async def consume(noisy: bool) -> list[float]:
        out = []
        async for value in stream():
            out.append(value)
            if noisy:
                random.random()
        return out

    with outside_state_restored():
        noisy = asyncio.run(consume(True))
    quiet = asyncio.run(consume(False))
    four = random.Random(4)
    assert noisy == quiet == [four.random() for _ in range(3)]
    assert full_state() == before


def test_async_generator_asend_athrow_aclose() -> None:
    """asend, athrow and aclose pass through the async generator wrapper."""
    before = full_state()

    @seeded(4)
    async def echo() -> AsyncIterator[object]:
        received = yield "start"
        try:
            received = yield ("got", received)
        except KeyError:
            yield "caught"
        finally:
            random.random()

    async def main() -> list[object]:
        agen = echo()
        out = [await agen.asend(None), await agen.asend("x"), await agen.athrow(KeyError("k"))]
        await agen.aclose()
        return out

    assert asyncio.run(main()) == ["start", ("got", "x"), "caught"]
    assert full_state() == before
