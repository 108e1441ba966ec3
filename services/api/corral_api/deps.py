"""Dependencies of the gateway routes, built in lifespan and declared once."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from corral_common.http import from_state, request_id_of

from corral_api.clients import AuthClient, RegistryClient, WebsearchClient
from corral_api.nodes import InferenceRouter
from corral_api.remote.known import RESOLVED, KnownModel
from corral_api.remote.runs import RemoteRuns
from corral_api.running import Call
from corral_api.usage import MeteredInference, reporter


def _call(request: Request) -> Call:
    """The clients a model call needs, with the caller's request id; an authenticated caller's model calls
    are reported as its usage."""
    state = request.app.state
    principal = getattr(request.state, "principal", None)
    inference = MeteredInference(state.inference, reporter(state.auth, principal)) if principal else state.inference
    known = getattr(request.state, RESOLVED, None)
    registry = KnownModel(state.registry, *known) if known else state.registry
    return Call(registry, inference, request_id_of(request))


Registry = Annotated[RegistryClient, Depends(from_state("registry"))]
Inference = Annotated[InferenceRouter, Depends(from_state("inference"))]
Websearch = Annotated[WebsearchClient, Depends(from_state("websearch"))]
Auth = Annotated[AuthClient, Depends(from_state("auth"))]
RequestId = Annotated[str, Depends(request_id_of)]
ModelCall = Annotated[Call, Depends(_call)]
RemoteInUse = Annotated[RemoteRuns, Depends(from_state("remote_runs"))]
