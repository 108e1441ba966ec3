"""Dependencies of the gateway routes, built in lifespan and declared once."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from corral_api.clients import ServiceClient
from corral_common.http import request_id_of


def _store(request: Request) -> ServiceClient:
    return request.app.state.store


def _inference(request: Request) -> ServiceClient:
    return request.app.state.inference


Store = Annotated[ServiceClient, Depends(_store)]
Inference = Annotated[ServiceClient, Depends(_inference)]
RequestId = Annotated[str, Depends(request_id_of)]
