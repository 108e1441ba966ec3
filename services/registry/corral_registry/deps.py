"""Dependencies of the registry routes, built in lifespan and declared once."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from corral_common.jobs import JobRunner

from corral_registry.store import ModelStore
from corral_registry.transfer.remote import HostPolicy


def _store(request: Request) -> ModelStore:
    return request.app.state.store


def _jobs(request: Request) -> JobRunner:
    return request.app.state.jobs


def _policy(request: Request) -> HostPolicy:
    return request.app.state.policy


Store = Annotated[ModelStore, Depends(_store)]
Policy = Annotated[HostPolicy, Depends(_policy)]
Jobs = Annotated[JobRunner, Depends(_jobs)]
