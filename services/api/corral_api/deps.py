"""Dependencies of the gateway routes, built in lifespan and declared once."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from corral_api.clients import InferenceClient, RegistryClient, WebsearchClient
from corral_common.http import request_id_of


def _registry(request: Request) -> RegistryClient:
    return request.app.state.registry


def _inference(request: Request) -> InferenceClient:
    return request.app.state.inference


def _websearch(request: Request) -> WebsearchClient:
    return request.app.state.websearch


Registry = Annotated[RegistryClient, Depends(_registry)]
Inference = Annotated[InferenceClient, Depends(_inference)]
Websearch = Annotated[WebsearchClient, Depends(_websearch)]
RequestId = Annotated[str, Depends(request_id_of)]
