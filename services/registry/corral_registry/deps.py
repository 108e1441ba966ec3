"""Dependencies of the registry routes, built in lifespan and declared once."""

from __future__ import annotations

from typing import Annotated

from celery import Celery
from fastapi import Depends, Request

from corral_registry.store import ModelStore


def _store(request: Request) -> ModelStore:
    return request.app.state.store


def _celery(request: Request) -> Celery:
    return request.app.state.celery


Store = Annotated[ModelStore, Depends(_store)]
CeleryApp = Annotated[Celery, Depends(_celery)]
