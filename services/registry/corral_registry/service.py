"""Model-store operations behind the routes: list, show, resolve, copy, delete, blobs, create."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

from corral_common.digest import parse_digest as parse_digest  # routes call service.parse_digest
from corral_common.errors import BadGateway, BadRequest, NotFound
from corral_common.internal import ResolvedModel, TransferRequest
from corral_common.names import parse_name
from corral_common.schemas import CopyRequest, CreateRequest, NamedRequest, ShowRequest
from corral_common.jobs import JobRunner
from corral_common.tasks import CREATE_MODEL_TASK, PULL_MODEL_TASK, PUSH_MODEL_TASK

from corral_registry import loadcheck
from corral_registry.create import plan_create
from corral_registry.modelinfo import ModelView, resolved, show_response
from corral_registry.push import local_model
from corral_registry.store import ModelStore, StoredModel
from corral_registry.transfer.remote import HostPolicy, Remote, resolve_remote


def _require(store: ModelStore, text: str, not_found: str) -> StoredModel:
    """Load a model by name or raise 404 with the given message."""
    stored = store.get(parse_name(text))
    if stored is None:
        raise NotFound(not_found)
    return stored


def list_models(store: ModelStore) -> dict[str, Any]:
    """GET /api/tags, newest first."""
    models = sorted(store.list(), key=lambda m: m.modified, reverse=True)
    return {"models": [ModelView(store, m).tags_entry() for m in models]}


def show(store: ModelStore, req: ShowRequest) -> dict[str, Any]:
    """POST /api/show."""
    if not req.model_name():
        raise BadRequest("model is required")
    name = parse_name(req.model_name())
    stored = store.get(name)
    if stored is None:
        raise NotFound(f"model '{name.display_shortest()}' not found")
    system = req.system if req.system else None
    return show_response(ModelView(store, stored), req.verbose, system, req.options or {})


def resolve(store: ModelStore, req: NamedRequest) -> ResolvedModel:
    """Everything needed to run a model, or 404 ``model 'x' not found`` (name as sent)."""
    stored = _require(store, req.model_name(), f"model '{req.model_name()}' not found")
    info = resolved(ModelView(store, stored))
    if info is None:
        raise BadRequest(f"model '{req.model_name()}' has no model layer to run")
    return info


def copy(store: ModelStore, req: CopyRequest) -> None:
    """POST /api/copy: byte-copy of the manifest."""
    parse_name(req.source, f'source "{req.source}" is invalid')
    destination = parse_name(req.destination, f'destination "{req.destination}" is invalid')
    source = _require(store, req.source, f'model "{req.source}" not found')
    store.copy_manifest(source, destination)


def delete(store: ModelStore, req: NamedRequest) -> None:
    """DELETE /api/delete: manifest, empty dirs, unreferenced blobs."""
    text = req.model_name()
    parse_name(text, f'name "{text}" is invalid')
    store.delete(_require(store, text, f"model '{text}' not found"))


async def create(store: ModelStore, jobs: JobRunner, req: CreateRequest) -> AsyncIterator[dict[str, Any]]:
    """Validate now (so bad input is a 400 before anything is queued), then run the create job."""
    plan = await asyncio.to_thread(plan_create, store, req)
    await asyncio.to_thread(loadcheck.check_model_files, store, plan.model_files)
    async for event in jobs.run("create", CREATE_MODEL_TASK, req.model_dump(by_alias=True, exclude_none=True)):
        yield event


async def _check_host(policy: HostPolicy, remote: Remote) -> None:
    """403 before queueing for a registry host that resolves to a refused address (the worker checks again)."""
    try:
        await asyncio.to_thread(policy.check, remote.base_url)
    except BadGateway:
        pass  # unresolvable here: the job reports it in the stream, as Ollama does


async def _transfer(jobs: JobRunner, policy: HostPolicy, kind: str, task: str,
                    req: TransferRequest) -> AsyncIterator[dict[str, Any]]:
    """Validate the name and host now (400/403 before anything is queued), then run or join the model's job."""
    remote = resolve_remote(req.model_name(), req.insecure)
    await _check_host(policy, remote)
    job = TransferRequest(model=req.model_name(), insecure=req.insecure)  # credentials never travel
    async for event in jobs.run(kind, task, job.model_dump(exclude_defaults=True), key=str(remote.name)):
        yield event


def pull(jobs: JobRunner, policy: HostPolicy, req: TransferRequest) -> AsyncIterator[dict[str, Any]]:
    """Run or join the pull job of a model."""
    return _transfer(jobs, policy, "pull", PULL_MODEL_TASK, req)


async def push(store: ModelStore, jobs: JobRunner, policy: HostPolicy,
               req: TransferRequest) -> AsyncIterator[dict[str, Any]]:
    """``model is required`` is a 400 (before the name is parsed), a model not stored here a 404 (before anything
    is queued); then run or join the push job."""
    if not req.model_name():
        raise BadRequest("model is required")
    await asyncio.to_thread(local_model, store, resolve_remote(req.model_name(), req.insecure))
    async for event in _transfer(jobs, policy, "push", PUSH_MODEL_TASK, req):
        yield event
