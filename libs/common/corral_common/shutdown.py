"""A stopping server's grace period: running requests may finish in it, and what still waits when it ends
is cut with a typed error, so a stream ends with a final error line instead of a cut connection."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager

from corral_common.env import env_positive
from corral_common.errors import ServiceUnavailable

DEFAULT_GRACE_SECONDS = 10.0
# After the grace period: time for the cut streams to write their last line before the server cancels them.
ENDING_SECONDS = 2.0


def shutdown_grace(environ: Mapping[str, str]) -> float:
    """CORRAL_SHUTDOWN_GRACE: seconds running requests may go on after SIGTERM (default 10; 0 ends them at once)."""
    return env_positive(environ, "CORRAL_SHUTDOWN_GRACE", DEFAULT_GRACE_SECONDS, allow_zero=True)


class ShuttingDown(ServiceUnavailable):
    """What a request still running at the end of the grace period gets (a stream: as its final line)."""

    def __init__(self) -> None:
        super().__init__("server shutting down")


class Shutdown:
    """The end of a stopping server's grace period, for the waits on other services that it cuts.

    ``bounded()`` wraps one wait (never a ``yield``: the scope belongs to the task that awaits); ``end_grace()``,
    called on the event loop, makes every such wait in progress, and any begun later, raise ShuttingDown.
    """

    def __init__(self) -> None:
        self.over = False
        self._scopes: set[asyncio.Timeout] = set()
        self._watched: set[Callable[[BaseException], None]] = set()

    def watch(self, cut: Callable[[BaseException], None]) -> Callable[[], None]:
        """Have ``cut(ShuttingDown())`` called when the grace period ends (at once if it has); returns the undo.

        For a stream that waits many times (a token stream's every line): one registration instead of a scope
        per wait."""
        if self.over:
            cut(ShuttingDown())
        self._watched.add(cut)
        return lambda: self._watched.discard(cut)

    @asynccontextmanager
    async def bounded(self) -> AsyncIterator[None]:
        """Run one wait that the end of the grace period cuts with ShuttingDown."""
        if self.over:
            raise ShuttingDown()
        try:
            async with asyncio.timeout(None) as scope:
                self._scopes.add(scope)
                try:
                    yield
                finally:
                    self._scopes.discard(scope)
        except TimeoutError:
            if scope.expired():
                raise ShuttingDown() from None
            raise

    def end_grace(self) -> None:
        """The grace period is over: cut the waits in progress now."""
        self.over = True
        now = asyncio.get_running_loop().time()
        for scope in list(self._scopes):
            scope.reschedule(now)
        for cut in list(self._watched):
            cut(ShuttingDown())
