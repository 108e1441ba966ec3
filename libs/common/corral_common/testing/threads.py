"""Run the same call from several threads at once, as concurrency tests do."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable


def run_together(target: Callable[..., object], arguments: Iterable[tuple], timeout: float | None = None,
                 ) -> list[BaseException]:
    """Call target once per argument tuple, each in a thread of its own, all started before any is joined.

    Returns what the calls raised (empty when every call returned), so the test asserts on it.
    """
    errors: list[BaseException] = []

    def call(*args: object) -> None:
        try:
            target(*args)
        except BaseException as exc:  # noqa: BLE001 - handed back to the test
            errors.append(exc)

    threads = [threading.Thread(target=call, args=args) for args in arguments]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout)
    return errors
