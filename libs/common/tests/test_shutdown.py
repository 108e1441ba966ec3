"""The end of a stopping server's grace period cuts the waits in progress with a typed error, and only those."""

from __future__ import annotations

import asyncio

import pytest

from corral_common.shutdown import Shutdown, ShuttingDown, shutdown_grace


async def _wait_forever(shutdown: Shutdown) -> None:
    async with shutdown.bounded():
        await asyncio.Event().wait()


def test_the_end_of_the_grace_period_cuts_waits_in_progress_and_refuses_new_ones() -> None:
    async def scenario() -> None:
        shutdown = Shutdown()
        async with shutdown.bounded():
            await asyncio.sleep(0)  # a wait that ends in time is untouched
        waiting = asyncio.ensure_future(_wait_forever(shutdown))
        await asyncio.sleep(0.01)
        shutdown.end_grace()
        with pytest.raises(ShuttingDown, match="server shutting down"):
            await waiting
        with pytest.raises(ShuttingDown):
            await _wait_forever(shutdown)

    asyncio.run(scenario())


def test_a_cancellation_from_elsewhere_stays_a_cancellation() -> None:
    async def scenario() -> None:
        waiting = asyncio.ensure_future(_wait_forever(Shutdown()))  # e.g. the client went away
        await asyncio.sleep(0.01)
        waiting.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiting

    asyncio.run(scenario())


@pytest.mark.parametrize(("value", "seconds"), [(None, 10.0), ("2", 2.0), ("0", 0.0), ("-1", 10.0), ("soon", 10.0)])
def test_the_grace_period_comes_from_corral_shutdown_grace(value: str | None, seconds: float) -> None:
    environ = {} if value is None else {"CORRAL_SHUTDOWN_GRACE": value}
    assert shutdown_grace(environ) == seconds
