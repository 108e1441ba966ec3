"""Dependencies of the inference routes, built in lifespan and declared once."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends

from corral_common.http import from_state

from corral_inference.scheduler import Scheduler
from corral_inference.settings import InferenceSettings

SchedulerDep = Annotated[Scheduler, Depends(from_state("scheduler"))]
SettingsDep = Annotated[InferenceSettings, Depends(from_state("settings"))]
