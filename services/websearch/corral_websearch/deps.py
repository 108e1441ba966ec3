"""Dependencies of the websearch routes, built in lifespan and declared once."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from corral_websearch.service import WebService


def _service(request: Request) -> WebService:
    return request.app.state.service


Service = Annotated[WebService, Depends(_service)]
