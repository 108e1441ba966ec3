"""Pull and push as jobs: the one body the worker runs for both (``corral_common.jobs`` runs it).

Each task is idempotent: a pull skips finished blobs and resumes partial ones, a push skips blobs
the registry has, so the runner may queue a job again when its worker died.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

import httpx

from corral_common.errors import BadGateway
from corral_common.internal import TransferRequest

from corral_registry.pull import Reporter, pull_model
from corral_registry.push import push_model
from corral_registry.settings import TransferSettings
from corral_registry.store import ModelStore
from corral_registry.transfer.client import RegistryClient

Direction = Literal["pull", "push"]
_RUN = {"pull": pull_model, "push": push_model}


def run_transfer(direction: Direction, store: ModelStore, client_factory: Callable[[], RegistryClient],
                 settings: TransferSettings, req: TransferRequest, report: Reporter) -> None:
    """Pull or push one model with a client of its own; a failed request to the registry is a 502."""
    client = client_factory()
    try:
        _RUN[direction](store, client, settings, req, report)
    except httpx.HTTPError as exc:
        raise BadGateway(f"registry request failed: {exc or type(exc).__name__}") from None
    finally:
        client.close()
