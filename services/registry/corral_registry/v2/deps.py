"""Dependencies of the /v2 routes, built in lifespan and declared once."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from corral_registry.v2.names import Repo, parse_repo
from corral_registry.v2.service import Registry


def _registry(request: Request) -> Registry:
    return request.app.state.registry


def _repo(namespace: str, model: str, request: Request) -> Repo:
    return parse_repo(namespace, model, request.app.state.registry.layout_host)


RegistryDep = Annotated[Registry, Depends(_registry)]
RepoDep = Annotated[Repo, Depends(_repo)]
