"""The gateway's readiness: the services it calls answer their ``/healthz`` (cheap, with a short timeout)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol

from corral_common.health import Check, Probe, Readiness

PROBE_TIMEOUT = 2.0
SERVICES = ("registry", "inference", "auth", "websearch")  # the app.state names of the clients


class Probed(Protocol):
    """A typed client of another service."""

    def readiness_probe(self) -> Probe:
        """A probe of that service's ``/healthz``."""


def register_checks(readiness: Readiness, clients: Mapping[str, Probed], skip: tuple[str, ...] = ()) -> None:
    """One check per service the gateway calls, except those in ``skip``."""
    readiness.add(*(Check(name, client.readiness_probe(), PROBE_TIMEOUT)
                    for name, client in clients.items() if name not in skip))
