"""Dependencies of the registry routes, built in lifespan and declared once."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends

from corral_common.http import from_state
from corral_common.jobs import JobRunner

from corral_registry.store import ModelStore
from corral_registry.transfer.remote import HostPolicy

Store = Annotated[ModelStore, Depends(from_state("store"))]
Policy = Annotated[HostPolicy, Depends(from_state("policy"))]
Jobs = Annotated[JobRunner, Depends(from_state("jobs"))]
