"""Cloud names on the model-management routes: pull, show and create of ``NAME:TAG-cloud`` / ``NAME:cloud``.

The protocol with the cloud (a corral, or anything speaking Ollama's API) is its ``/api/show``: it answers
for the models its deployment hosts, to an identity it accepts. ``pull NAME:TAG-cloud`` asks it about
``NAME:TAG`` and, if it answers, stores a remote-model record ``NAME:TAG-cloud`` (``NAME:cloud`` without a
tag) whose config carries ``remote_host`` (the cloud), ``remote_model`` (``NAME:TAG``) and what the cloud
said of the model (family, size, quantization, context length, capabilities). ``show`` of a cloud name is
the cloud's answer with ``remote_model``/``remote_host`` added; ``create --from NAME:cloud`` without
``remote_host`` runs it on the cloud, as Ollama's create does.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from fastapi.responses import Response

from corral_common.errors import NotFound
from corral_common.http import GoJSONResponse
from corral_common.internal import ProgressEvent
from corral_common.remote import ModelRef
from corral_common.schemas import CreateRequest

from corral_api.remote.client import Target
from corral_api.routes.registry import progress_answer


def cloud_target(state: Any, ref: ModelRef) -> Target:
    """The configured cloud's model of a cloud name; 404 saying what to set when there is no cloud."""
    cloud = state.remote.settings.cloud_url
    if not cloud:
        raise NotFound(f"model '{ref.original}' not found: cloud models need CORRAL_CLOUD_URL, the hosted corral "
                       "that runs them")
    return Target(cloud, ref.base)


def info_of(shown: dict[str, Any]) -> dict[str, Any]:
    """What a pulled record keeps of the cloud's /api/show answer, as /api/create's ``info``."""
    details = shown.get("details") or {}
    family = details.get("family") or ""
    model_info = shown.get("model_info") or {}
    info: dict[str, Any] = {"capabilities": list(shown.get("capabilities") or []), "model_family": family,
                            "parameter_size": details.get("parameter_size") or "",
                            "quantization_level": details.get("quantization_level") or ""}
    for key in ("context_length", "embedding_length"):
        value = model_info.get(f"{family}.{key}") or details.get(key)
        if isinstance(value, int) and value > 0:
            info[key] = value
    if isinstance(model_info.get("general.basename"), str):
        info["base_name"] = model_info["general.basename"]
    return info


async def pull(state: Any, ref: ModelRef, body: dict[str, Any], request_id: str) -> Response:
    """``/api/pull`` of a cloud name: the cloud's /api/show (its refusal keeps its status), then the record."""
    target = cloud_target(state, ref)
    shown = await state.remote.show(target, request_id)
    create = CreateRequest.model_validate({"model": ref.pull_name(), "from": ref.base, "remote_host": target.host,
                                           "info": info_of(shown)})

    async def events() -> AsyncIterator[ProgressEvent]:
        yield ProgressEvent(status="pulling manifest")
        async for event in state.registry.create(create, request_id):
            yield event

    return await progress_answer(body.get("stream") is not False, events())


async def show(state: Any, ref: ModelRef, body: dict[str, Any], request_id: str) -> Response:
    """``/api/show`` of a cloud name: the cloud's answer for the name without its suffix, marked remote."""
    target = cloud_target(state, ref)
    extra = {k: v for k, v in body.items() if k not in ("model", "name")}
    shown = await state.remote.show(target, request_id, extra)
    out: dict[str, Any] = {}
    for key, value in shown.items():
        if key == "model_info":
            out.update(remote_model=target.model, remote_host=target.host)
        out[key] = value
    out.setdefault("remote_model", target.model)
    out.setdefault("remote_host", target.host)
    return GoJSONResponse(out)


def create_body(state: Any, ref: ModelRef, body: dict[str, Any]) -> dict[str, Any]:
    """``/api/create`` from a cloud name without ``remote_host``: the cloud runs it (Ollama's create)."""
    return {**body, "remote_host": cloud_target(state, ref).host}
