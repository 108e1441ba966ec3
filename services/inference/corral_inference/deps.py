"""Dependencies of the inference routes, built in lifespan and declared once."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from corral_inference.scheduler import Scheduler
from corral_inference.settings import InferenceSettings


def _scheduler(request: Request) -> Scheduler:
    return request.app.state.scheduler


def _settings(request: Request) -> InferenceSettings:
    return request.app.state.settings


SchedulerDep = Annotated[Scheduler, Depends(_scheduler)]
SettingsDep = Annotated[InferenceSettings, Depends(_settings)]
