"""Dependencies of the websearch routes, built in lifespan and declared once."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends

from corral_common.http import from_state

from corral_websearch.service import WebService

Service = Annotated[WebService, Depends(from_state("service"))]
